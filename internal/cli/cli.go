// Package cli holds what Lifeboat's commands share: subcommand dispatch,
// repeatable flags, and the progress and output flags.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/progress"
)

// IO is a command's standard streams.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Command is one subcommand.
type Command struct {
	Name     string
	Usage    string // arguments, after the name
	Synopsis string
	// Run defines its flags on fs, which prints the command's usage, then
	// parses args with Parse.
	Run func(ctx context.Context, io IO, fs *flag.FlagSet, args []string) error
}

// ErrUsage marks an error in how a command was called; Main prints the
// usage after it and exits 2.
var ErrUsage = errors.New("usage")

// exitError ends a command with a status whose message was printed already.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Exit returns an error that makes Run exit with code and print nothing:
// for a command that ran a nested Run.
func Exit(code int) error { return exitError(code) }

// Usagef returns an error wrapping ErrUsage.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Run dispatches args[0] to its command and returns the exit status.
func Run(ctx context.Context, prog string, cmds []Command, io IO, args []string) int {
	usage := func() {
		fmt.Fprintf(io.Stderr, "usage: %s COMMAND [FLAGS] ARGS\n\ncommands:\n", prog)
		for _, c := range cmds {
			fmt.Fprintf(io.Stderr, "  %-14s %s\n", c.Name, c.Synopsis)
		}
		fmt.Fprintf(io.Stderr, "\nRun %s COMMAND -h for a command's flags.\n", prog)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range cmds {
		if c.Name != args[0] {
			continue
		}
		err := c.Run(ctx, io, flagSet(prog, c, io), args[1:])
		var exit exitError
		switch {
		case errors.As(err, &exit):
			return int(exit)
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, ErrUsage):
			fmt.Fprintf(io.Stderr, "%s %s: %v\nusage: %s %s %s\n", prog, c.Name, err, prog, c.Name, c.Usage)
			return 2
		default:
			fmt.Fprintf(io.Stderr, "%s %s: %v\n", prog, c.Name, err)
			return 1
		}
	}
	fmt.Fprintf(io.Stderr, "%s: unknown command %q\n", prog, args[0])
	usage()
	return 2
}

// flagSet returns a flag set for a command that reports errors instead of
// exiting, and prints its defaults under the command's usage line.
func flagSet(prog string, c Command, io IO) *flag.FlagSet {
	fs := flag.NewFlagSet(prog+" "+c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(io.Stderr, "usage: %s %s %s\n\n%s\n\nflags:\n", prog, c.Name, c.Usage, c.Synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args and wraps a flag error as a usage error.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return nil
}

// Strings is a flag that may be given several times.
type Strings []string

func (s *Strings) String() string     { return strings.Join(*s, ",") }
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }

// Output is the pair of flags every reporting command has: --progress and
// --json.
type Output struct {
	progress string
	json     bool
}

// OutputFlags defines --progress and --json on fs.
func OutputFlags(fs *flag.FlagSet) *Output {
	o := &Output{}
	fs.StringVar(&o.progress, "progress", "auto", "progress display: auto, bar, line (serial consoles) or none")
	fs.BoolVar(&o.json, "json", false, "print statistics as JSON on stdout")
	return o
}

// JSONFlag defines only --json on fs, for commands with no progress to
// show.
func JSONFlag(fs *flag.FlagSet) *Output {
	o := &Output{progress: "none"}
	fs.BoolVar(&o.json, "json", false, "print the result as JSON on stdout")
	return o
}

// Reporter returns the progress reporter --progress asks for, drawing on w.
func (o *Output) Reporter(w io.Writer) (progress.Reporter, error) { return Progress(o.progress, w) }

// Result prints v as indented JSON on w if --json was given, and calls text
// otherwise.
func (o *Output) Result(w io.Writer, v any, text func(io.Writer)) error {
	if !o.json {
		text(w)
		return nil
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Progress returns the reporter a --progress flag value asks for: "bar"
// redraws a line in place, "line" prints a line per step (for serial
// consoles and logs), "none" is silent, and "auto" picks bar on a terminal
// and line elsewhere.
func Progress(mode string, w io.Writer) (progress.Reporter, error) {
	switch mode {
	case "none":
		return progress.Discard, nil
	case "line":
		return &progress.Lines{W: w}, nil
	case "bar":
		return &progress.Bar{W: w}, nil
	case "auto", "":
		if isTerminal(w) && os.Getenv("TERM") != "dumb" && os.Getenv("TERM") != "" {
			return &progress.Bar{W: w}, nil
		}
		return &progress.Lines{W: w}, nil
	}
	return nil, Usagef("--progress=%s: want auto, bar, line or none", mode)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
