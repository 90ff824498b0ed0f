package grub

import (
	"bytes"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// This file models, for tests, what GRUB itself does with a block
// (grub-core/lib/envblk.c and commands/loadenv.c in GRUB 2.06), from their
// documented behaviour: load_env's reading and save_env's in-place edit.

// grubNextLine returns where the line after the one at p starts.
func grubNextLine(b []byte, p int) int {
	for p < len(b) {
		if b[p] == '\\' {
			p += 2
		} else if b[p] == '\n' {
			break
		} else {
			p++
		}
	}
	return p + 1
}

// grubLoad returns the variables GRUB's load_env sets from block b: every
// line not starting with '#', up to the first damage; later lines of a name
// overwrite earlier ones. ok is false when the signature is wrong and
// load_env sets nothing.
func grubLoad(b []byte) (v bootenv.Vars, ok bool) {
	if len(b) < len(Signature)+1 || !bytes.HasPrefix(b, []byte(Signature)) {
		return nil, false
	}
	v = bootenv.Vars{}
	for p := len(Signature); p < len(b); {
		if b[p] == '#' {
			p = grubNextLine(b, p)
			continue
		}
		eq := bytes.IndexByte(b[p:], '=')
		if eq < 0 {
			return v, true
		}
		name := b[p : p+eq]
		q := p + eq + 1
		var val []byte
		for q < len(b) && b[q] != '\n' {
			if b[q] == '\\' {
				q++
				if q >= len(b) {
					return v, true
				}
			}
			val = append(val, b[q])
			q++
		}
		if q >= len(b) {
			return v, true
		}
		// GRUB's strings end at a NUL.
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if i := bytes.IndexByte(val, 0); i >= 0 {
			val = val[:i]
		}
		v[string(name)] = string(val)
		p = q + 1
	}
	return v, true
}

// grubSet is save_env's edit of one variable in b, in place: the value
// replaced where the name is, moving what follows, or the line appended
// in the free space before the padding. It reports false where GRUB fails
// ("environment block too small", or a broken block) and leaves b as GRUB
// would: unchanged.
func grubSet(b []byte, name, value string) bool {
	var esc []byte
	for i := 0; i < len(value); i++ {
		if value[i] == '\\' || value[i] == '\n' {
			esc = append(esc, '\\')
		}
		esc = append(esc, value[i])
	}
	space := len(b) - 1
	for space >= 0 && b[space] == '#' {
		space--
	}
	if space < 0 || b[space] != '\n' {
		return false
	}
	space++
	for p := len(Signature); p+len(name)+1 < space; p = grubNextLine(b, p) {
		if !bytes.HasPrefix(b[p:], []byte(name)) || b[p+len(name)] != '=' {
			continue
		}
		p += len(name) + 1
		l := 0
		for p+l < len(b) && b[p+l] != '\n' {
			if b[p+l] == '\\' {
				l += 2
			} else {
				l++
			}
		}
		if p+l >= len(b) || len(b)-space < len(esc)-l {
			return false
		}
		copy(b[p+len(esc):], b[p+l:])
		if len(esc) < l {
			copy(b[space-(l-len(esc)):space], bytes.Repeat([]byte{'#'}, l-len(esc)))
		}
		copy(b[p:], esc)
		b[p+len(esc)] = '\n'
		return true
	}
	if len(b)-space < len(name)+1+len(esc)+1 {
		return false
	}
	n := copy(b[space:], name)
	b[space+n] = '='
	n += 1 + copy(b[space+n+1:], esc)
	b[space+n] = '\n'
	return true
}
