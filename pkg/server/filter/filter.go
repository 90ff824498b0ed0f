// Package filter is the fleet server's search language: a small grammar
// over a device's board, installed version, status, last contact,
// inventory attributes, tags and groups, parsed into an expression tree and
// compiled to a parameterised SQL condition that runs on SQLite and
// PostgreSQL alike. Values never enter the SQL text: each is a $N argument.
//
// Grammar (keywords are case-insensitive):
//
//	expr    = and { "or" and }
//	and     = unary { "and" unary }
//	unary   = "not" unary | primary
//	primary = "(" expr ")" | "tag:" NAME | "group:" NAME | field op value
//	field   = "id" | "board" | "version" | "status" | "last_seen" | "attr." NAME
//	op      = "=" | "!=" | "<" | ">"
//	value   = WORD | '"' characters, with \" and \\ '"'
//
// id, board, version, status and attr.NAME take = and != ("!=" is "not
// ="; a device without the attribute is != any value). status is a phase
// of the last report (idle, downloading, verifying, installing, rebooting,
// installed, failed) or none, for a device that never reported.
// last_seen takes < and > with a duration relative to now (Go's syntax,
// plus d for days): last_seen<1h is seen within the last hour, last_seen>7d
// is not seen for more than a week, or never.
//
// Example: board=qemu-x86_64 and version!=2.0 and attr.site=depot-3 and
// (status=failed or last_seen>1d) and tag:field and not group:north
package filter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on what a filter may be.
const (
	MaxLen   = 2048 // bytes of filter text
	MaxDepth = 32   // nesting of parentheses and not
)

// Error is a filter that does not parse: where, at what token, and why.
type Error struct {
	Pos   int    // byte offset of the token, from 0
	Token string // the token, "" at the end of the text
	Msg   string
}

func (e *Error) Error() string {
	if e.Token == "" {
		return fmt.Sprintf("filter: at %d (end of text): %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("filter: at %d, %q: %s", e.Pos, e.Token, e.Msg)
}

// Expr is a parsed filter.
type Expr interface{ expr() }

// And, Or and Not combine expressions.
type (
	And struct{ L, R Expr }
	Or  struct{ L, R Expr }
	Not struct{ X Expr }
)

// Cmp compares a field with a value: Field is id, board, version, status,
// last_seen or attr.NAME.
type Cmp struct {
	Field string
	Op    string // =, !=, <, >
	Value string
	// Age is last_seen's duration.
	Age time.Duration
}

// Tag is tag:NAME; Group is group:NAME.
type (
	Tag   struct{ Name string }
	Group struct{ Name string }
)

func (And) expr()   {}
func (Or) expr()    {}
func (Not) expr()   {}
func (Cmp) expr()   {}
func (Tag) expr()   {}
func (Group) expr() {}

// Statuses are what status= compares with.
var Statuses = []string{"idle", "downloading", "verifying", "installing", "rebooting", "installed", "failed", "none"}

type tokKind int

const (
	tEnd tokKind = iota
	tWord
	tString
	tLParen
	tRParen
	tOp
)

type token struct {
	kind tokKind
	text string // the word, the string's value, or the operator
	pos  int
	raw  string
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:+~-/@", c) >= 0
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, token{tLParen, "(", i, "("})
			i++
		case c == ')':
			toks = append(toks, token{tRParen, ")", i, ")"})
			i++
		case c == '=' || c == '<' || c == '>':
			toks = append(toks, token{tOp, string(c), i, string(c)})
			i++
		case c == '!':
			if i+1 >= len(s) || s[i+1] != '=' {
				return nil, &Error{i, "!", "want != (use not to negate)"}
			}
			toks = append(toks, token{tOp, "!=", i, "!="})
			i += 2
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					if j+1 >= len(s) || (s[j+1] != '"' && s[j+1] != '\\') {
						return nil, &Error{j, s[j:min(j+2, len(s))], `bad escape: want \" or \\`}
					}
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, &Error{i, s[i:min(i+20, len(s))], "string not closed"}
			}
			toks = append(toks, token{tString, b.String(), i, s[i : j+1]})
			i = j + 1
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{tWord, s[i:j], i, s[i:j]})
			i = j
		default:
			return nil, &Error{i, s[i : i+1], "unexpected character"}
		}
	}
	return append(toks, token{kind: tEnd, pos: len(s)}), nil
}

type parser struct {
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func errAt(t token, format string, args ...any) error {
	return &Error{t.pos, t.raw, fmt.Sprintf(format, args...)}
}

func (p *parser) keyword(t token, k string) bool {
	return t.kind == tWord && strings.EqualFold(t.text, k)
}

// Parse parses a filter.
func Parse(s string) (Expr, error) {
	if len(s) > MaxLen {
		return nil, &Error{MaxLen, "", fmt.Sprintf("filter of %d bytes, the most is %d", len(s), MaxLen)}
	}
	// Values go to the database as text, and PostgreSQL's holds neither
	// NUL nor bytes that are not UTF-8: no filter may, on either database.
	for i, r := range s {
		if r == 0 || (r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD")) {
			return nil, &Error{i, s[i : i+1], "a NUL or a byte that is not UTF-8: a filter is UTF-8 text"}
		}
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if p.peek().kind == tEnd {
		return nil, errAt(p.peek(), "empty filter")
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEnd {
		return nil, errAt(t, "want and, or, or the end of the filter")
	}
	return e, nil
}

func (p *parser) or() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.keyword(p.peek(), "or") {
		p.next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = Or{l, r}
	}
	return l, nil
}

func (p *parser) and() (Expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.keyword(p.peek(), "and") {
		p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = And{l, r}
	}
	return l, nil
}

func (p *parser) unary() (Expr, error) {
	t := p.peek()
	if p.depth++; p.depth > MaxDepth {
		return nil, errAt(t, "nested more than %d deep", MaxDepth)
	}
	defer func() { p.depth-- }()
	if p.keyword(t, "not") {
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return Not{x}, nil
	}
	return p.primary()
}

var fields = "id, board, version, status, last_seen, attr.NAME, tag:NAME or group:NAME"

func (p *parser) primary() (Expr, error) {
	t := p.next()
	switch t.kind {
	case tLParen:
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, errAt(c, "want ) to close the ( at %d", t.pos)
		}
		return e, nil
	case tWord:
	case tEnd:
		return nil, errAt(t, "want a condition: %s", fields)
	default:
		return nil, errAt(t, "want a condition: %s", fields)
	}
	low := strings.ToLower(t.text)
	for _, kw := range []string{"and", "or", "not"} {
		if low == kw {
			return nil, errAt(t, "want a condition before %s", kw)
		}
	}
	if name, ok := strings.CutPrefix(t.text, "tag:"); ok {
		if err := checkName(t, "tag", name); err != nil {
			return nil, err
		}
		return Tag{name}, nil
	}
	if name, ok := strings.CutPrefix(t.text, "group:"); ok {
		if err := checkName(t, "group", name); err != nil {
			return nil, err
		}
		return Group{name}, nil
	}
	field := t.text
	switch {
	case field == "id", field == "board", field == "version", field == "status", field == "last_seen":
	case strings.HasPrefix(field, "attr."):
		if err := checkName(t, "attribute", field[len("attr."):]); err != nil {
			return nil, err
		}
	default:
		return nil, errAt(t, "unknown field: want %s", fields)
	}
	op := p.next()
	if op.kind != tOp {
		return nil, errAt(op, "want an operator after %s: =, !=, < or >", field)
	}
	if field == "last_seen" && (op.text == "=" || op.text == "!=") {
		return nil, errAt(op, "last_seen takes < or > and a duration (last_seen<1h: seen within the hour)")
	}
	if field != "last_seen" && (op.text == "<" || op.text == ">") {
		return nil, errAt(op, "%s takes = or !=", field)
	}
	v := p.next()
	if v.kind != tWord && v.kind != tString {
		return nil, errAt(v, "want a value after %s%s", field, op.text)
	}
	c := Cmp{Field: field, Op: op.text, Value: v.text}
	switch field {
	case "last_seen":
		d, err := ParseAge(v.text)
		if err != nil {
			return nil, errAt(v, "%v", err)
		}
		c.Age = d
	case "status":
		known := false
		for _, s := range Statuses {
			known = known || s == v.text
		}
		if !known {
			return nil, errAt(v, "unknown status: want %s", strings.Join(Statuses, ", "))
		}
	}
	return c, nil
}

// NameOK says whether s may name a tag, a group or an attribute: 1 to 64
// letters, digits, '.', '_' or '-'.
func NameOK(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func checkName(t token, what, name string) error {
	if !NameOK(name) {
		return errAt(t, "%s name %q: want 1 to 64 letters, digits, '.', '_' or '-'", what, name)
	}
	return nil
}

// ParseAge parses a duration of last_seen: Go's syntax (90s, 1h30m) or a
// whole number of days (7d). It must be positive.
func ParseAge(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return 0, errors.New("duration: want Go's syntax (90s, 1h30m) or days (7d)")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("duration: want Go's syntax (90s, 1h30m) or days (7d)")
		}
	}
	if d <= 0 {
		return 0, errors.New("duration: want more than 0")
	}
	return d, nil
}
