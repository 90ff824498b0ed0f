// Package store is the fleet server's storage: devices and their
// attributes, tags and groups, their status reports, releases and
// rollouts, operator tokens and the audit log, behind one interface.
//
// One implementation, DB, runs on two databases: SQLite (pure Go,
// modernc.org/sqlite), a file, by default; and PostgreSQL (jackc/pgx/v5
// through database/sql) for fleets that outgrow one. Open chooses from the
// data source name (a path, or a postgres:// URL). Every query and
// migration is the same on both ($N placeholders, which the SQLite driver
// binds by ordinal; BIGINT times; no database's own syntax); what must
// differ is a dialect value: identity columns, telling a unique violation,
// the transactions' isolation and whether to run one again. Migrations are
// numbered SQL files embedded in the binary (migrations/NNNN_name.sql),
// each applied in its own transaction and recorded in schema_migrations.
//
// Every change an operator makes is written in the same transaction as its
// audit Event: either both are stored or neither. Device reports (status,
// inventory, polls) are not audited: they change only the reporting
// device's own row, and the audit log would otherwise grow with every poll.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// Errors callers branch on with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrRevoked  = errors.New("already revoked")
)

// Device is a registered device.
type Device struct {
	ID    string
	Board string
	// TokenSHA256 is the SHA-256 of the device's token, lower-case hex.
	// A device enrolled by certificate has one too: of a token made at
	// enrollment and given to no one.
	TokenSHA256  string
	TokenExpires time.Time // zero: never
	// CertSHA256 is the SHA-256 of the DER certificate the device enrolled
	// with, lower-case hex; "" for a device an operator registered.
	CertSHA256 string
	RevokedAt  time.Time // zero: not revoked
	Created    time.Time
	LastSeen   time.Time // zero: never
	// InstalledVersion is the release the device runs: the one it was
	// flashed with until it reports another.
	InstalledVersion string
	// Status is the last status report, nil before the first.
	Status *api.Status
	// Attributes is the last inventory. Device fills it; SearchDevices
	// leaves it nil.
	Attributes map[string]string
	// Tags are the operators' labels, sorted. Device fills them;
	// SearchDevices leaves them nil.
	Tags []string
}

// Role is what an operator may do; each role may do what the ones below it
// may.
type Role string

// The roles, lowest first.
const (
	Viewer   Role = "viewer"   // read devices, groups, releases, rollouts
	Operator Role = "operator" // register, revoke and tag devices; groups, releases, rollouts
	Admin    Role = "admin"    // read the audit log, delete releases
)

// Rank orders roles: a higher rank may do all a lower one may. An unknown
// role ranks 0, below every role.
func (r Role) Rank() int {
	switch r {
	case Viewer:
		return 1
	case Operator:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// OperatorToken is an operator's API token.
type OperatorToken struct {
	// TokenSHA256 is the SHA-256 of the token, lower-case hex.
	TokenSHA256 string
	Name        string
	Role        Role
	Created     time.Time
	Expires     time.Time // zero: never
	RevokedAt   time.Time // zero: not revoked
}

// Event is one entry of the audit log: who did what to what, and when.
type Event struct {
	ID     int64 // assigned by the store, increasing
	At     time.Time
	Actor  string // "operator:NAME", or "cli" for the server's own command
	Action string // "device.register", "device.revoke", "token.create", …
	Target string // the device ID or token name acted on
	Detail string // JSON or text the action adds
}

// Devices holds the devices.
type Devices interface {
	// RegisterDevice adds d, recording ev. A device with the same ID or
	// token is ErrExists. Registered by an operator or enrolled by
	// certificate (d.CertSHA256 set), a device is stored the same way.
	RegisterDevice(ctx context.Context, d Device, ev Event) error
	// RegisterDevices adds ds, all or none, recording ev once. When a
	// device's ID or token is registered, or given twice in ds, nothing
	// is added and the error, ErrExists, names the first such device by
	// its index in ds and its ID.
	RegisterDevices(ctx context.Context, ds []Device, ev Event) error
	// Device returns the device with id, with its attributes, or
	// ErrNotFound.
	Device(ctx context.Context, id string) (Device, error)
	// DeviceByToken returns the device whose token has the SHA-256
	// tokenSHA256 (revoked or not), without its status, attributes and
	// tags, or ErrNotFound.
	DeviceByToken(ctx context.Context, tokenSHA256 string) (Device, error)
	// RevokeDevice revokes id's token at ev.At, recording ev:
	// ErrNotFound, or ErrRevoked when it is already.
	RevokeDevice(ctx context.Context, id string, ev Event) error
}

// Reports holds what devices report about themselves. Each call marks the
// device seen at at; a device that is not there is ErrNotFound.
type Reports interface {
	// Seen marks id seen at at, and only that: a store may write it
	// later (DB: within SeenInterval, reads through it seeing it at
	// once), and drop it then for a device that is not there.
	Seen(ctx context.Context, id string, at time.Time) error
	// ReportStatus stores st as id's status, and its installed version.
	ReportStatus(ctx context.Context, id string, st api.Status, at time.Time) error
	// ReportInventory replaces id's attributes with attrs.
	ReportInventory(ctx context.Context, id string, attrs map[string]string, at time.Time) error
}

// Operators holds the operators' tokens.
type Operators interface {
	// CreateOperatorToken adds t, recording ev; a token with the same
	// name or hash is ErrExists.
	CreateOperatorToken(ctx context.Context, t OperatorToken, ev Event) error
	// OperatorToken returns the token whose SHA-256 is tokenSHA256
	// (revoked or not), or ErrNotFound.
	OperatorToken(ctx context.Context, tokenSHA256 string) (OperatorToken, error)
	// RevokeOperatorToken revokes the token named name at ev.At,
	// recording ev: ErrNotFound, or ErrRevoked.
	RevokeOperatorToken(ctx context.Context, name string, ev Event) error
	// HasAdmin says whether an admin token exists that is neither
	// revoked nor expired at now.
	HasAdmin(ctx context.Context, now time.Time) (bool, error)
}

// Audit reads the audit log.
type Audit interface {
	// Events returns up to limit events with IDs below before (0: from
	// the newest), newest first.
	Events(ctx context.Context, before int64, limit int) ([]Event, error)
}

// Store is all the server stores.
type Store interface {
	Devices
	Reports
	Operators
	Audit
	Fleet
	Artifacts
	Close() error
}
