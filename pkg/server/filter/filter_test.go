package filter

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Expr
	}{
		{"board=qemu-x86_64", Cmp{Field: "board", Op: "=", Value: "qemu-x86_64"}},
		{`attr.site = "depot 3"`, Cmp{Field: "attr.site", Op: "=", Value: "depot 3"}},
		{`attr.note="say \"hi\" \\"`, Cmp{Field: "attr.note", Op: "=", Value: `say "hi" \`}},
		{"last_seen<1h", Cmp{Field: "last_seen", Op: "<", Value: "1h", Age: time.Hour}},
		{"last_seen>7d", Cmp{Field: "last_seen", Op: ">", Value: "7d", Age: 7 * 24 * time.Hour}},
		{"tag:field", Tag{"field"}},
		// and binds tighter than or; not tighter than and.
		{"tag:a or tag:b and not tag:c", Or{Tag{"a"}, And{Tag{"b"}, Not{Tag{"c"}}}}},
		{"(tag:a or tag:b) AND group:north", And{Or{Tag{"a"}, Tag{"b"}}, Group{"north"}}},
		{"version!=2 and status=failed", And{Cmp{Field: "version", Op: "!=", Value: "2"}, Cmp{Field: "status", Op: "=", Value: "failed"}}},
		{"not not id=SN:1", Not{Not{Cmp{Field: "id", Op: "=", Value: "SN:1"}}}},
	} {
		got, err := Parse(tc.in)
		if err != nil || !cmp.Equal(got, tc.want) {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		in  string
		pos int
		tok string
		msg string
	}{
		{"", 0, "", "empty filter"},
		{"board", 5, "", "want an operator after board"},
		{"board=", 6, "", "want a value after board="},
		{"board==x", 6, "=", "want a value"},
		{"colour=red", 0, "colour", "unknown field"},
		{"board=x and", 11, "", "want a condition"},
		{"board=x or or tag:a", 11, "or", "want a condition before or"},
		{"(tag:a", 6, "", "want ) to close the ( at 0"},
		{"tag:a)", 5, ")", "want and, or, or the end"},
		{"tag:a tag:b", 6, "tag:b", "want and, or, or the end"},
		{"board!x", 5, "!", "want !="},
		{"board<x", 5, "<", "board takes = or !="},
		{"last_seen=1h", 9, "=", "last_seen takes < or >"},
		{"last_seen<soon", 10, "soon", "duration"},
		{"last_seen<-1h", 10, "-1h", "more than 0"},
		{"status=dancing", 7, "dancing", "unknown status"},
		{"tag:", 0, "tag:", "tag name"},
		{"attr.=x", 0, "attr.", "attribute name"},
		{`board="x`, 6, `"x`, "string not closed"},
		{`board="\x"`, 7, `\x`, "bad escape"},
		{"board=x;drop", 7, ";", "unexpected character"},
		{"board=\"a\x00\"", 8, "\x00", "a NUL or a byte that is not UTF-8"},
		{"board=\"\xff\"", 7, "\xff", "a NUL or a byte that is not UTF-8"},
		{"board=\"\uFFFD\" and tag:\x00", 20, "\x00", "a NUL"},
		{strings.Repeat("(", 40) + "tag:a" + strings.Repeat(")", 40), 32, "(", "nested more than 32 deep"},
		{strings.Repeat("not ", 40) + "tag:a", 128, "not", "nested more than 32 deep"},
		{strings.Repeat("x", MaxLen+1), MaxLen, "", "the most is 2048"},
	} {
		_, err := Parse(tc.in)
		var fe *Error
		if !errors.As(err, &fe) || fe.Pos != tc.pos || fe.Token != tc.tok || !strings.Contains(fe.Msg, tc.msg) {
			t.Errorf("Parse(%q) = %v; want an error at %d, %q, naming %q", tc.in, err, tc.pos, tc.tok, tc.msg)
		}
	}
}

func TestCompile(t *testing.T) {
	now := time.Unix(1000, 0)
	groups := func(name string) (string, bool, error) {
		switch name {
		case "static":
			return "", true, nil
		case "dyn":
			return "board=b and tag:t", false, nil
		case "loop":
			return "group:loop2", false, nil
		case "loop2":
			return "tag:x or group:loop", false, nil
		}
		return "", false, errors.New("no such group")
	}
	e, err := Parse("board=b1 and (attr.site!=d3 or last_seen<1s) and group:static and group:dyn and status=none")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Compile(e, now, 3, groups)
	if err != nil {
		t.Fatal(err)
	}
	want := SQL{
		Where: "(((((devices.board = $3) AND ((NOT EXISTS (SELECT 1 FROM device_attributes a WHERE a.device_id = devices.id AND a.name = $4 AND a.value = $5)) OR " +
			"(devices.last_seen IS NOT NULL AND devices.last_seen > $6))) AND EXISTS (SELECT 1 FROM group_members g WHERE g.device_id = devices.id AND g.group_name = $7)) AND " +
			"((devices.board = $8) AND EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = devices.id AND t.tag = $9))) AND (COALESCE(devices.phase, 'none') = $10))",
		Args: []any{"b1", "site", "d3", now.Add(-time.Second).UnixNano(), "static", "b", "t", "none"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Compile -want +got:\n%s", diff)
	}
	for _, in := range []string{"group:nope", "group:loop"} {
		e, _ := Parse(in)
		if _, err := Compile(e, now, 1, groups); err == nil {
			t.Errorf("Compile(%q) succeeded, want an error", in)
		}
	}
}

// FuzzParse: any text either parses, and then compiles with one argument
// per placeholder and no value in the SQL text, or is an *Error whose
// position lies within the text.
func FuzzParse(f *testing.F) {
	b, err := os.ReadFile("testdata/filters.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) || fe.Pos < 0 || fe.Pos > max(len(s), MaxLen) {
				t.Fatalf("Parse(%q) = %v, want an *Error within the text", s, err)
			}
			return
		}
		c, err := Compile(e, time.Unix(0, 0), 1, func(string) (string, bool, error) { return "", true, nil })
		if err != nil {
			t.Fatalf("Compile(Parse(%q)) = %v", s, err)
		}
		if n := strings.Count(c.Where, "$"); n != len(c.Args) {
			t.Fatalf("Compile(Parse(%q)) has %d placeholders and %d arguments", s, n, len(c.Args))
		}
		if strings.ContainsAny(c.Where, `";`) {
			t.Fatalf("Compile(Parse(%q)) = %q: text from the filter in the SQL", s, c.Where)
		}
	})
}
