package ebg

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// User variable types (USERVAR_TYPE_* in EBG's include/ebgenv.h). The low
// 32 bits of a type are the standard type; bits 32-48 are free for users.
const (
	TypeChar        uint64 = 1
	TypeUint8       uint64 = 2
	TypeUint16      uint64 = 3
	TypeUint32      uint64 = 4
	TypeUint64      uint64 = 5
	TypeSint8       uint64 = 6
	TypeSint16      uint64 = 7
	TypeSint32      uint64 = 8
	TypeSint64      uint64 = 9
	TypeStringASCII uint64 = 32
	TypeBool        uint64 = 64

	standardTypeMask = 1<<32 - 1
)

// UserVar is one user variable record:
//
//	key, NUL | uint32 payload size | uint64 type | data
//
// where the payload size counts itself, the type and the data. bg_setenv
// -x stores strings as TypeStringASCII with their NUL.
type UserVar struct {
	Key  string
	Type uint64
	Data []byte
}

// StringVar returns a user variable holding s as bg_setenv -x stores it.
func StringVar(key, s string) UserVar {
	return UserVar{Key: key, Type: TypeStringASCII, Data: append([]byte(s), 0)}
}

// Value formats v's data as bg_printenv does, and reports whether its
// type is one bg_printenv prints.
func (v UserVar) Value() (string, bool) {
	d := v.Data
	le := binary.LittleEndian
	need := map[uint64]int{TypeChar: 1, TypeBool: 1, TypeUint8: 1, TypeSint8: 1,
		TypeUint16: 2, TypeSint16: 2, TypeUint32: 4, TypeSint32: 4, TypeUint64: 8, TypeSint64: 8}
	t := v.Type & standardTypeMask
	if n, ok := need[t]; ok && len(d) < n {
		return "", false
	}
	switch t {
	case TypeStringASCII:
		if i := bytes.IndexByte(d, 0); i >= 0 {
			d = d[:i]
		}
		return string(d), true
	case TypeChar:
		return string(d[:1]), true
	case TypeBool:
		return strconv.FormatBool(d[0] != 0), true
	case TypeUint8:
		return strconv.FormatUint(uint64(d[0]), 10), true
	case TypeUint16:
		return strconv.FormatUint(uint64(le.Uint16(d)), 10), true
	case TypeUint32:
		return strconv.FormatUint(uint64(le.Uint32(d)), 10), true
	case TypeUint64:
		return strconv.FormatUint(le.Uint64(d), 10), true
	case TypeSint8:
		return strconv.FormatInt(int64(int8(d[0])), 10), true
	case TypeSint16:
		return strconv.FormatInt(int64(int16(le.Uint16(d))), 10), true
	case TypeSint32:
		return strconv.FormatInt(int64(int32(le.Uint32(d))), 10), true
	case TypeSint64:
		return strconv.FormatInt(int64(le.Uint64(d)), 10), true
	}
	return "", false
}

// UserVars decodes the user variable area. It rejects what EBG's tools
// reject (a record running past the area, bgenv_validate_uservars) and a
// payload too short to hold its own size and type; the error wraps
// bootenv.ErrCorrupt. EBG's loader itself never reads user variables.
func (c *Config) UserVars() ([]UserVar, error) {
	var vars []UserVar
	u := c.User
	for off := 0; off < len(u) && u[off] != 0; {
		left := len(u) - off
		k := bytes.IndexByte(u[off:], 0)
		if k < 0 || k+1+4 >= left {
			return nil, fmt.Errorf("user variable at %d: key runs past the area: %w", off, bootenv.ErrCorrupt)
		}
		key := string(u[off : off+k])
		off += k + 1
		left -= k + 1
		size := binary.LittleEndian.Uint32(u[off:])
		if uint64(size) >= uint64(left) {
			return nil, fmt.Errorf("user variable %q: payload of %d bytes, %d left: %w", key, size, left, bootenv.ErrCorrupt)
		}
		if size < 12 {
			return nil, fmt.Errorf("user variable %q: payload of %d bytes, want at least 12: %w", key, size, bootenv.ErrCorrupt)
		}
		vars = append(vars, UserVar{
			Key:  key,
			Type: binary.LittleEndian.Uint64(u[off+4:]),
			Data: bytes.Clone(u[off+12 : off+int(size)]),
		})
		off += int(size)
	}
	return vars, nil
}

// SetUserVars replaces the user variables with vars, in order, as EBG's
// library lays them out: records back to back, then zeros, at least one.
func (c *Config) SetUserVars(vars []UserVar) error {
	var b []byte
	seen := make(map[string]bool)
	for _, v := range vars {
		if v.Key == "" || bytes.IndexByte([]byte(v.Key), 0) >= 0 {
			return fmt.Errorf("user variable %q: key empty or holding NUL", v.Key)
		}
		if seen[v.Key] {
			return fmt.Errorf("user variable %q: twice", v.Key)
		}
		seen[v.Key] = true
		b = append(b, v.Key...)
		b = append(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(4+8+len(v.Data)))
		b = binary.LittleEndian.AppendUint64(b, v.Type)
		b = append(b, v.Data...)
		if len(b) >= UserDataSize {
			return fmt.Errorf("user variables: more than %d bytes: %w", UserDataSize-1, ErrTooLong)
		}
	}
	if len(b) == 0 {
		c.User = nil
		return nil
	}
	c.User = make([]byte, UserDataSize)
	copy(c.User, b)
	return nil
}
