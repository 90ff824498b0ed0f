package filter

import (
	"fmt"
	"strings"
	"time"
)

// GroupLookup tells what group name is: a static set (its members are in
// the group_members table) or a named filter, whose text it returns. An
// unknown group is an error, which Compile returns wrapped.
type GroupLookup func(name string) (filter string, static bool, err error)

// SQL is a compiled filter: a condition over the devices table, with $N
// placeholders numbered from the first argument Compile was given.
type SQL struct {
	Where string
	Args  []any
}

type compiler struct {
	now    time.Time
	first  int
	args   []any
	groups GroupLookup
	inside map[string]bool // groups being expanded, to refuse cycles
}

// Compile turns e into a condition on the devices table (columns id,
// board, installed_version, phase, last_seen) whose placeholders start at
// $first, so that it can follow a query's own arguments. Times are
// relative to now; group:NAME is expanded through groups.
func Compile(e Expr, now time.Time, first int, groups GroupLookup) (SQL, error) {
	c := &compiler{now: now, first: first, groups: groups, inside: map[string]bool{}}
	w, err := c.compile(e)
	if err != nil {
		return SQL{}, err
	}
	return SQL{Where: w, Args: c.args}, nil
}

func (c *compiler) arg(v any) string {
	c.args = append(c.args, v)
	return fmt.Sprintf("$%d", c.first+len(c.args)-1)
}

var columns = map[string]string{"id": "devices.id", "board": "devices.board", "version": "devices.installed_version"}

func (c *compiler) compile(e Expr) (string, error) {
	switch e := e.(type) {
	case And:
		return c.binary(e.L, "AND", e.R)
	case Or:
		return c.binary(e.L, "OR", e.R)
	case Not:
		x, err := c.compile(e.X)
		return "(NOT " + x + ")", err
	case Tag:
		return "EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = devices.id AND t.tag = " + c.arg(e.Name) + ")", nil
	case Group:
		if c.inside[e.Name] {
			return "", fmt.Errorf("group %s: its filter refers to itself", e.Name)
		}
		if c.groups == nil {
			return "", fmt.Errorf("group %s: no groups here", e.Name)
		}
		text, static, err := c.groups(e.Name)
		if err != nil {
			return "", fmt.Errorf("group %s: %w", e.Name, err)
		}
		if static {
			return "EXISTS (SELECT 1 FROM group_members g WHERE g.device_id = devices.id AND g.group_name = " + c.arg(e.Name) + ")", nil
		}
		x, err := Parse(text)
		if err != nil {
			return "", fmt.Errorf("group %s: %w", e.Name, err)
		}
		c.inside[e.Name] = true
		defer delete(c.inside, e.Name)
		return c.compile(x)
	case Cmp:
		return c.cmp(e), nil
	}
	return "", fmt.Errorf("filter: unknown expression %T", e)
}

func (c *compiler) binary(l Expr, op string, r Expr) (string, error) {
	ls, err := c.compile(l)
	if err != nil {
		return "", err
	}
	rs, err := c.compile(r)
	if err != nil {
		return "", err
	}
	return "(" + ls + " " + op + " " + rs + ")", nil
}

// cmp compiles a comparison so that it is true or false, never NULL:
// NOT of it is then its complement.
func (c *compiler) cmp(e Cmp) string {
	var eq string
	switch {
	case e.Field == "last_seen":
		since := c.arg(c.now.Add(-e.Age).UnixNano())
		if e.Op == "<" {
			return "(devices.last_seen IS NOT NULL AND devices.last_seen > " + since + ")"
		}
		return "(devices.last_seen IS NULL OR devices.last_seen < " + since + ")"
	case e.Field == "status":
		eq = "COALESCE(devices.phase, 'none') = " + c.arg(e.Value)
	case strings.HasPrefix(e.Field, "attr."):
		eq = "EXISTS (SELECT 1 FROM device_attributes a WHERE a.device_id = devices.id AND a.name = " +
			c.arg(e.Field[len("attr."):]) + " AND a.value = " + c.arg(e.Value) + ")"
	default:
		eq = columns[e.Field] + " = " + c.arg(e.Value)
	}
	if e.Op == "!=" {
		return "(NOT " + eq + ")"
	}
	return "(" + eq + ")"
}
