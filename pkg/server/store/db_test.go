package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func openDB(t *testing.T, dsn string) *DB {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func hash(c byte) string { return strings.Repeat(string(c), 64) }

func device(id string, c byte) Device {
	return Device{ID: id, Board: "qemu-x86_64", TokenSHA256: hash(c), Created: t0, InstalledVersion: "1.0"}
}

func event(action, target string) Event {
	return Event{At: t0, Actor: "operator:alice", Action: action, Target: target}
}

func versions(t *testing.T, s *DB) []int {
	t.Helper()
	rows, err := s.db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		rows.Scan(&v)
		vs = append(vs, v)
	}
	return vs
}

// tableExists says whether a table name can be read, the one question
// both databases answer the same way.
func tableExists(s *DB, name string) bool {
	var n int
	return s.db.QueryRow(`SELECT COUNT(*) FROM `+name).Scan(&n) == nil
}

func TestOpenFresh(t *testing.T) { storetest.Run(t, testOpenFresh) }

func testOpenFresh(t *testing.T, dsn string) {
	s := openDB(t, dsn)
	want, err := loadMigrations(migrations)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(t, s); len(got) != len(want) || got[len(got)-1] != len(want) {
		t.Errorf("schema_migrations = %v, want 1..%d", got, len(want))
	}
	for _, table := range []string{"devices", "device_attributes", "operator_tokens", "audit_log"} {
		if !tableExists(s, table) {
			t.Errorf("fresh database lacks table %s", table)
		}
	}
	if tableExists(s, "no_such_table") {
		t.Error("tableExists(no_such_table) = true")
	}
}

func TestSQLitePragmas(t *testing.T) {
	s := openDB(t, storetest.SQLite(t))
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
	var fk int
	if err := s.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d (%v), want 1", fk, err)
	}
	// A last_seen write of the most devices looks each up by its ID,
	// rather than scanning them all.
	args := make([]any, 0, 2*seenRows)
	for i := range seenRows {
		args = append(args, fmt.Sprint("dev-", i), int64(i))
	}
	rows, err := s.db.Query(`EXPLAIN QUERY PLAN `+seenQuery(sqliteDialect, seenRows), args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var (
			id, parent, unused int
			detail             string
		)
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if !slices.ContainsFunc(plan, func(d string) bool { return strings.HasPrefix(d, "SEARCH devices USING INDEX") }) {
		t.Errorf("plan of a last_seen write of %d devices = %q, want the devices searched by their index", seenRows, plan)
	}
}

func TestOpenOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%41 d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fleet.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %q: %v", path, err)
	}
}

func TestReopenIsNoop(t *testing.T) { storetest.Run(t, testReopenIsNoop) }

func testReopenIsNoop(t *testing.T, dsn string) {
	ctx := context.Background()
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterDevice(ctx, device("dev-1", 'a'), event("device.register", "dev-1")); err != nil {
		t.Fatal(err)
	}
	before := versions(t, s)
	s.Close()

	s, err = Open(ctx, dsn)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if n, err := migrate(ctx, s.db, s.d, migrations); n != 0 || err != nil {
		t.Errorf("migrate on an up-to-date database = %d, %v; want 0, nil", n, err)
	}
	if got := versions(t, s); !cmp.Equal(got, before) {
		t.Errorf("schema_migrations after reopen = %v, want %v", got, before)
	}
	if _, err := s.Device(ctx, "dev-1"); err != nil {
		t.Errorf("device lost across reopen: %v", err)
	}
}

func TestFailingMigrationRollsBack(t *testing.T) { storetest.Run(t, testFailingMigrationRollsBack) }

func testFailingMigrationRollsBack(t *testing.T, dsn string) {
	ctx := context.Background()
	first, err := migrations.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	bad := fstest.MapFS{
		"migrations/0001_init.sql": {Data: first},
		// Creates a table, then fails: the table must not stay.
		"migrations/0002_broken.sql": {Data: []byte("CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n")},
	}
	if _, err := open(ctx, dsn, bad); err == nil || !strings.Contains(err.Error(), "0002_broken") {
		t.Fatalf("open with a failing migration = %v, want an error naming 0002_broken", err)
	}
	// Opened with the first migration alone, so that nothing is applied.
	s, err := open(ctx, dsn, fstest.MapFS{"migrations/0001_init.sql": {Data: first}})
	if err != nil {
		t.Fatalf("open after the failed migration: %v", err)
	}
	defer s.Close()
	if got := versions(t, s); !cmp.Equal(got, []int{1}) {
		t.Errorf("schema_migrations = %v, want [1]: 0002 must not be recorded", got)
	}
	if tableExists(s, "half_done") {
		t.Error("table half_done of the failed migration exists: not rolled back")
	}
}

func TestNewerDatabaseRefused(t *testing.T) { storetest.Run(t, testNewerDatabaseRefused) }

func testNewerDatabaseRefused(t *testing.T, dsn string) {
	ctx := context.Background()
	ms, err := loadMigrations(migrations)
	if err != nil {
		t.Fatal(err)
	}
	// This server's migrations and one more.
	newer := fstest.MapFS{}
	for _, m := range ms {
		newer[fmt.Sprintf("migrations/%04d_%s.sql", m.version, m.name)] = &fstest.MapFile{Data: []byte(m.sql)}
	}
	newer[fmt.Sprintf("migrations/%04d_more.sql", len(ms)+1)] = &fstest.MapFile{Data: []byte("CREATE TABLE more (x INTEGER);")}
	s, err := open(ctx, dsn, newer)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, dsn); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("open of a database newer than the server = %v, want an error saying so", err)
	}
}

func TestLoadMigrationsRefuses(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":      {"migrations/0001_a.sql": sql, "migrations/0003_c.sql": sql},
		"bad name": {"migrations/0001_a.sql": sql, "migrations/2_b.sql": sql},
		"twice":    {"migrations/0001_a.sql": sql, "migrations/0001_b.sql": sql},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("loadMigrations(%s) = nil error, want one", name)
		}
	}
}

func TestDevices(t *testing.T) { storetest.Run(t, testDevices) }

func testDevices(t *testing.T, dsn string) {
	ctx := context.Background()
	s := openDB(t, dsn)
	d := device("dev-1", 'a')
	d.TokenExpires = t0.Add(24 * time.Hour)
	if err := s.RegisterDevice(ctx, d, event("device.register", "dev-1")); err != nil {
		t.Fatal(err)
	}
	for _, dup := range []Device{device("dev-1", 'b'), device("dev-2", 'a')} {
		if err := s.RegisterDevice(ctx, dup, event("device.register", dup.ID)); !errors.Is(err, ErrExists) {
			t.Errorf("RegisterDevice(%s, token %.4s…) = %v, want ErrExists", dup.ID, dup.TokenSHA256, err)
		}
	}
	got, err := s.Device(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	d.Attributes = map[string]string{}
	if diff := cmp.Diff(d, got); diff != "" {
		t.Errorf("Device(dev-1) -want +got:\n%s", diff)
	}
	if byTok, err := s.DeviceByToken(ctx, hash('a')); err != nil || byTok.ID != "dev-1" {
		t.Errorf("DeviceByToken(a…) = %q, %v; want dev-1", byTok.ID, err)
	}
	if _, err := s.DeviceByToken(ctx, hash('z')); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeviceByToken(z…) = %v, want ErrNotFound", err)
	}
	if _, err := s.Device(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Device(nope) = %v, want ErrNotFound", err)
	}

	// Only the first event: the refused registrations recorded nothing.
	evs, err := s.Events(ctx, 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Target != "dev-1" || evs[0].Action != "device.register" {
		t.Errorf("Events = %+v, %v; want the one registration", evs, err)
	}

	// A device enrolled by certificate keeps the certificate's hash.
	c := device("dev-cert", 'c')
	c.CertSHA256 = hash('d')
	if err := s.RegisterDevice(ctx, c, event("device.enroll", "dev-cert")); err != nil {
		t.Fatal(err)
	}
	c.Attributes = map[string]string{}
	if got, err := s.Device(ctx, "dev-cert"); err != nil || !cmp.Equal(c, got) {
		t.Errorf("Device(dev-cert) = %+v, %v; want %+v", got, err, c)
	}

	if err := s.RevokeDevice(ctx, "dev-1", Event{At: t0.Add(time.Hour), Actor: "operator:alice", Action: "device.revoke", Target: "dev-1"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Device(ctx, "dev-1"); !got.RevokedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("RevokedAt = %v, want %v", got.RevokedAt, t0.Add(time.Hour))
	}
	if err := s.RevokeDevice(ctx, "dev-1", event("device.revoke", "dev-1")); !errors.Is(err, ErrRevoked) {
		t.Errorf("second RevokeDevice = %v, want ErrRevoked", err)
	}
	if err := s.RevokeDevice(ctx, "nope", event("device.revoke", "nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeDevice(nope) = %v, want ErrNotFound", err)
	}
	if evs, _ := s.Events(ctx, 0, 10); len(evs) != 3 {
		t.Errorf("%d events after one revocation, want 3 (two devices, the revocation)", len(evs))
	}
}

func TestSearchDevicesPages(t *testing.T) { storetest.Run(t, testSearchDevicesPages) }

func testSearchDevicesPages(t *testing.T, dsn string) {
	ctx := context.Background()
	s := openDB(t, dsn)
	for i, id := range []string{"c", "a", "e", "b", "d"} {
		if err := s.RegisterDevice(ctx, device(id, "01234"[i]), event("device.register", id)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after := ""
	for {
		page, err := s.SearchDevices(ctx, nil, time.Time{}, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			got = append(got, d.ID)
		}
		after = page[len(page)-1].ID
	}
	if want := []string{"a", "b", "c", "d", "e"}; !cmp.Equal(got, want) {
		t.Errorf("pages of 2 = %v, want %v", got, want)
	}
	evs, _ := s.Events(ctx, 0, 2)
	older, _ := s.Events(ctx, evs[1].ID, 10)
	if len(evs) != 2 || len(older) != 3 || evs[0].Target != "d" || older[2].Target != "c" {
		t.Errorf("audit pages = %+v then %+v, want d, b then e, a, c", evs, older)
	}
}

func TestReports(t *testing.T) { storetest.Run(t, testReports) }

func testReports(t *testing.T, dsn string) {
	ctx := context.Background()
	s := openDB(t, dsn)
	s.RegisterDevice(ctx, device("dev-1", 'a'), event("device.register", "dev-1"))
	s.RegisterDevice(ctx, device("dev-2", 'b'), event("device.register", "dev-2"))
	st := api.Status{Phase: api.PhaseDownloading, Progress: 0.5, InstalledVersion: "1.1",
		Slots:    []api.SlotState{{Name: "A", State: "good"}, {Name: "B", State: "trying", TriesLeft: 3}},
		Transfer: api.Transfer{FetchedBytes: 10, ImageBytes: 100}}
	seen := t0.Add(time.Minute)
	if err := s.ReportStatus(ctx, "dev-1", st, seen); err != nil {
		t.Fatal(err)
	}
	if err := s.ReportInventory(ctx, "dev-1", map[string]string{"kernel": "6.1", "hw": "rev2"}, seen); err != nil {
		t.Fatal(err)
	}
	if err := s.ReportInventory(ctx, "dev-1", map[string]string{"kernel": "6.6"}, seen); err != nil {
		t.Fatal(err)
	}
	got, err := s.Device(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&st, got.Status); diff != "" {
		t.Errorf("stored status -want +got:\n%s", diff)
	}
	if got.InstalledVersion != "1.1" || !got.LastSeen.Equal(seen) {
		t.Errorf("installed %q, last seen %v; want 1.1, %v", got.InstalledVersion, got.LastSeen, seen)
	}
	if want := map[string]string{"kernel": "6.6"}; !cmp.Equal(got.Attributes, want) {
		t.Errorf("attributes = %v, want %v (an inventory replaces the last)", got.Attributes, want)
	}
	other, _ := s.Device(ctx, "dev-2")
	if other.Status != nil || len(other.Attributes) != 0 || !other.LastSeen.IsZero() {
		t.Errorf("dev-2 changed by dev-1's reports: %+v", other)
	}
	for name, err := range map[string]error{
		"ReportStatus":    s.ReportStatus(ctx, "nope", st, seen),
		"ReportInventory": s.ReportInventory(ctx, "nope", map[string]string{"a": "b"}, seen),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(nope) = %v, want ErrNotFound", name, err)
		}
	}
	if n := 0; s.db.QueryRow(`SELECT COUNT(*) FROM device_attributes WHERE device_id = 'nope'`).Scan(&n) != nil || n != 0 {
		t.Errorf("inventory of an unknown device left %d attributes", n)
	}
	if evs, _ := s.Events(ctx, 0, 10); len(evs) != 2 {
		t.Errorf("%d events, want the 2 registrations: reports are not audited", len(evs))
	}
}

func TestOperatorTokens(t *testing.T) { storetest.Run(t, testOperatorTokens) }

func testOperatorTokens(t *testing.T, dsn string) {
	ctx := context.Background()
	s := openDB(t, dsn)
	if ok, err := s.HasAdmin(ctx, t0); ok || err != nil {
		t.Errorf("HasAdmin on a fresh database = %v, %v; want false", ok, err)
	}
	// An admin token that expires counts until it does.
	temp := OperatorToken{TokenSHA256: hash('t'), Name: "temp", Role: Admin, Created: t0, Expires: t0.Add(time.Hour)}
	if err := s.CreateOperatorToken(ctx, temp, event("token.create", "temp")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.OperatorToken(ctx, hash('t')); err != nil || !cmp.Equal(got, temp) {
		t.Errorf("OperatorToken(temp) = %+v, %v; want %+v", got, err, temp)
	}
	if ok, _ := s.HasAdmin(ctx, t0); !ok {
		t.Error("HasAdmin before the admin token expires = false")
	}
	if ok, _ := s.HasAdmin(ctx, t0.Add(time.Hour)); ok {
		t.Error("HasAdmin with the only admin token expired = true")
	}
	admin := OperatorToken{TokenSHA256: hash('a'), Name: "root", Role: Admin, Created: t0}
	if err := s.CreateOperatorToken(ctx, admin, event("token.create", "root")); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.HasAdmin(ctx, t0.Add(time.Hour)); !ok {
		t.Error("HasAdmin = false after creating an admin token")
	}
	for _, bad := range []OperatorToken{
		{TokenSHA256: hash('b'), Name: "root", Role: Viewer, Created: t0},  // name taken
		{TokenSHA256: hash('a'), Name: "other", Role: Viewer, Created: t0}, // hash taken
	} {
		if err := s.CreateOperatorToken(ctx, bad, event("token.create", bad.Name)); !errors.Is(err, ErrExists) {
			t.Errorf("CreateOperatorToken(%s) = %v, want ErrExists", bad.Name, err)
		}
	}
	if err := s.CreateOperatorToken(ctx, OperatorToken{TokenSHA256: hash('c'), Name: "x", Role: "god", Created: t0}, event("token.create", "x")); err == nil {
		t.Error("CreateOperatorToken with role god succeeded")
	}
	got, err := s.OperatorToken(ctx, hash('a'))
	if err != nil || !cmp.Equal(got, admin) {
		t.Errorf("OperatorToken = %+v, %v; want %+v", got, err, admin)
	}
	if err := s.RevokeOperatorToken(ctx, "root", event("token.revoke", "root")); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.HasAdmin(ctx, t0.Add(time.Hour)); ok {
		t.Error("HasAdmin = true with one admin token revoked, the other expired")
	}
	if err := s.RevokeOperatorToken(ctx, "root", event("token.revoke", "root")); !errors.Is(err, ErrRevoked) {
		t.Errorf("second revocation = %v, want ErrRevoked", err)
	}
	if _, err := s.OperatorToken(ctx, hash('z')); !errors.Is(err, ErrNotFound) {
		t.Errorf("OperatorToken(z…) = %v, want ErrNotFound", err)
	}
	if evs, _ := s.Events(ctx, 0, 10); len(evs) != 3 {
		t.Errorf("%d events, want 3 (create twice, revoke)", len(evs))
	}
}

// TestOpenPostgresRefuses: a PostgreSQL URL that does not lead to a
// database is an error naming it, without its password.
func TestOpenPostgresRefuses(t *testing.T) {
	for _, dsn := range []string{
		"postgres://lifeboat:hunter2@127.0.0.1:1/fleet?sslmode=disable", // nothing listens
		"postgresql://lifeboat:hunter2@127.0.0.1:1/fleet?sslmode=bogus",
		"postgres://lifeboat:hunter2@[::1/fleet",
	} {
		s, err := Open(context.Background(), dsn)
		if err == nil {
			s.Close()
			t.Errorf("Open(%s) = nil error, want one", dsn)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "open ") {
			t.Errorf("Open(%s) = %v; want an error naming the database without its password", dsn, err)
		}
		t.Log(err)
	}
}

// TestRegisterDevices: a batch is registered whole, over more than one
// INSERT, or not at all, the error naming the first clash by index and
// ID; one event is recorded for it.
func TestRegisterDevices(t *testing.T) { storetest.Run(t, testRegisterDevices) }

func testRegisterDevices(t *testing.T, dsn string) {
	ctx := context.Background()
	s := openDB(t, dsn)
	if err := s.RegisterDevice(ctx, device("dev-1", 'a'), event("device.register", "dev-1")); err != nil {
		t.Fatal(err)
	}
	batch := func(n int) []Device {
		ds := make([]Device, n)
		for i := range ds {
			ds[i] = device(fmt.Sprintf("bulk-%04d", i), 'b')
			ds[i].TokenSHA256 = fmt.Sprintf("%064x", i)
		}
		return ds
	}
	for _, tc := range []struct {
		name string
		mod  func([]Device)
		msg  string
	}{
		{"ID given twice", func(ds []Device) { ds[9].ID = ds[4].ID }, "devices[9] (bulk-0004): already exists (its ID is given at devices[4] too)"},
		{"token given twice", func(ds []Device) { ds[9].TokenSHA256 = ds[3].TokenSHA256 }, "devices[9] (bulk-0009): already exists (its token is given at devices[3] too)"},
		{"ID registered, past the first INSERT", func(ds []Device) { ds[insertRows+5].ID = "dev-1" }, "devices[1005] (dev-1): already exists (its ID is registered)"},
		{"token registered", func(ds []Device) { ds[7].TokenSHA256 = hash('a') }, "devices[7] (bulk-0007): already exists (its token is registered to another device)"},
	} {
		ds := batch(insertRows + 10)
		tc.mod(ds)
		if err := s.RegisterDevices(ctx, ds, event("device.register_bulk", "")); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: RegisterDevices = %v, want ErrExists naming %q", tc.name, err, tc.msg)
		}
	}
	if ds, err := s.SearchDevices(ctx, nil, t0, "", 10); err != nil || len(ds) != 1 {
		t.Fatalf("after refused batches: %d devices, %v; want dev-1 alone", len(ds), err)
	}
	ds := batch(insertRows + 10)
	if err := s.RegisterDevices(ctx, ds, event("device.register_bulk", "")); err != nil {
		t.Fatalf("RegisterDevices(%d devices) = %v", len(ds), err)
	}
	got, err := s.SearchDevices(ctx, nil, t0, "", 2000)
	if err != nil || len(got) != len(ds)+1 || got[len(ds)-1].ID != ds[len(ds)-1].ID {
		t.Errorf("after the batch: %d devices, %v; want the %d of the batch and dev-1", len(got), err, len(ds))
	}
	if evs, _ := s.Events(ctx, 0, 10); len(evs) != 2 || evs[0].Action != "device.register_bulk" {
		t.Errorf("events = %+v, want the registration and one device.register_bulk", evs)
	}
}
