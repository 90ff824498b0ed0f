package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"regexp"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/server"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

var tokenCommand = cli.Command{
	Name:     "token",
	Usage:    "create|revoke [FLAGS]",
	Synopsis: "issue or revoke an operator's API token",
	Run: func(ctx context.Context, std cli.IO, _ *flag.FlagSet, args []string) error {
		if code := cli.Run(ctx, "lifeboat-server token", []cli.Command{tokenCreateCommand, tokenRevokeCommand}, std, args); code != 0 {
			return cli.Exit(code)
		}
		return nil
	},
}

var tokenCreateCommand = cli.Command{
	Name:     "create",
	Usage:    "[--db=FILE] --role=viewer|operator|admin --name=NAME [--expires=DURATION]",
	Synopsis: "issue an operator token and print it (shown this once)",
	Run:      runTokenCreate,
}

var tokenRevokeCommand = cli.Command{
	Name:     "revoke",
	Usage:    "[--db=FILE] --name=NAME",
	Synopsis: "revoke an operator token",
	Run:      runTokenRevoke,
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

func nameFlag(fs *flag.FlagSet) *string {
	return fs.String("name", "", "the token's name: who holds it (1 to 64 letters, digits, '.', '_', '@' or '-')")
}

func checkName(name string) error {
	if !tokenNameRE.MatchString(name) {
		return cli.Usagef("--name=%q: want 1 to 64 letters, digits, '.', '_', '@' or '-'", name)
	}
	return nil
}

func runTokenCreate(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	db := dbFlag(fs)
	role := fs.String("role", "", "viewer (read devices), operator (also register and revoke them) or admin (also read the audit log)")
	name := nameFlag(fs)
	expires := fs.Duration("expires", 0, "how long the token is accepted, e.g. 2160h for 90 days; 0 for until it is revoked")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return cli.Usagef("token create takes no arguments")
	}
	if *expires < 0 {
		return cli.Usagef("--expires=%s: want a positive duration, or 0 for a token that does not expire", *expires)
	}
	if store.Role(*role).Rank() == 0 {
		return cli.Usagef("--role=%q: want viewer, operator or admin", *role)
	}
	if err := checkName(*name); err != nil {
		return err
	}
	st, err := store.Open(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	tok, sha, err := server.NewToken(rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	t := store.OperatorToken{TokenSHA256: sha, Name: *name, Role: store.Role(*role), Created: now}
	detail := fmt.Sprintf(`{"role":%q}`, *role)
	if *expires > 0 {
		t.Expires = now.Add(*expires)
		detail = fmt.Sprintf(`{"role":%q,"expires":%q}`, *role, t.Expires.Format(time.RFC3339))
	}
	ev := store.Event{At: now, Actor: "cli", Action: "token.create", Target: *name, Detail: detail}
	if err := st.CreateOperatorToken(ctx, t, ev); err != nil {
		return err
	}
	fmt.Fprintln(std.Stdout, tok)
	return nil
}

func runTokenRevoke(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	db := dbFlag(fs)
	name := nameFlag(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return cli.Usagef("token revoke takes no arguments")
	}
	if err := checkName(*name); err != nil {
		return err
	}
	st, err := store.Open(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeOperatorToken(ctx, *name, store.Event{At: time.Now().UTC(), Actor: "cli", Action: "token.revoke", Target: *name}); err != nil {
		return err
	}
	fmt.Fprintf(std.Stdout, "operator token %s revoked\n", *name)
	return nil
}
