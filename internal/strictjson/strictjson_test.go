package strictjson

import (
	"errors"
	"testing"
)

func TestUnmarshal(t *testing.T) {
	type T struct {
		A int `json:"a"`
	}
	for _, tc := range []struct {
		in   string
		want error // nil: no error; errAny: some error
		a    int
	}{
		{`{"a": 1}`, nil, 1},
		{" {\"a\": 2}\n\t ", nil, 2},
		{``, ErrEmpty, 0},
		{`   `, ErrEmpty, 0},
		{`{"a": 1} {"a": 2}`, ErrTrailing, 0},
		{`{"a": 1} x`, ErrTrailing, 0},
		{`{"a": 1}}`, ErrTrailing, 0},
		{`{"a": 1, "b": 2}`, errAny, 0},
		{`{"a": "x"}`, errAny, 0},
		{`{"a": 1`, errAny, 0},
	} {
		var v T
		err := Unmarshal([]byte(tc.in), &v)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("Unmarshal(%q) = %v", tc.in, err)
		case tc.want == nil && v.A != tc.a:
			t.Errorf("Unmarshal(%q): a = %d, want %d", tc.in, v.A, tc.a)
		case tc.want == errAny && err == nil:
			t.Errorf("Unmarshal(%q) = nil, want an error", tc.in)
		case tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
			t.Errorf("Unmarshal(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

var errAny = errors.New("any error")
