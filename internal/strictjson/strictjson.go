// Package strictjson decodes JSON that must be exactly one value of the
// expected shape: an unknown field or anything after the value is an
// error, so that a misspelt key or a second object is never ignored.
// Every parser of untrusted or hand-written JSON in Lifeboat uses it.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// Errors Unmarshal returns besides encoding/json's own.
var (
	ErrEmpty    = errors.New("empty, want a JSON value")
	ErrTrailing = errors.New("data after the JSON value")
)

// Unmarshal decodes b into v, refusing unknown fields and anything but
// white space after the value.
func Unmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return ErrEmpty
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ErrTrailing
	}
	return nil
}
