package release

import (
	"errors"
	"fmt"
)

// The attacks a device must refuse, after TUF's threat model. Every refusal
// wraps one of them, so callers and tests branch with errors.Is, and the
// message names the class first.
var (
	// ErrArbitrarySoftware: metadata or content not signed by the keys the
	// device trusts, or not matching what they signed.
	ErrArbitrarySoftware = errors.New("arbitrary software")
	// ErrThreshold: fewer valid signatures by distinct trusted keys than the
	// role's threshold (one compromised key is not enough).
	ErrThreshold = errors.New("threshold")
	// ErrRollback: metadata or a release older than one already trusted or
	// installed.
	ErrRollback = errors.New("rollback")
	// ErrFreeze: metadata past its expiry, as when updates are withheld.
	ErrFreeze = errors.New("indefinite freeze")
	// ErrFastForward: a timestamp, snapshot or targets signed by a key that
	// root has since revoked, carrying a version beyond the trusted one. (A
	// root signed by a revoked key is simply not signed by the trusted
	// root: ErrArbitrarySoftware.)
	ErrFastForward = errors.New("fast-forward")
	// ErrMixAndMatch: metadata files that do not belong to the same
	// repository state (versions or hashes differ from what the parent
	// role signed).
	ErrMixAndMatch = errors.New("mix-and-match")
	// ErrEndlessData: a download longer than the signed metadata declares.
	ErrEndlessData = errors.New("endless data")
	// ErrExtraneous: a release that would install something the device has
	// no place for.
	ErrExtraneous = errors.New("extraneous dependencies")
	// ErrWrongBoard: no release for this device's board, or a release for
	// another board.
	ErrWrongBoard = errors.New("wrong board")
)

// AttackError is a refusal: its class, what was refused, and the error
// that revealed it, if any.
type AttackError struct {
	Class  error
	Detail string
	Cause  error
}

func (e *AttackError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%v: %s: %v", e.Class, e.Detail, e.Cause)
	}
	return fmt.Sprintf("%v: %s", e.Class, e.Detail)
}

// Unwrap makes errors.Is(err, ErrRollback) and the like hold, and reaches
// the cause.
func (e *AttackError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Class, e.Cause}
	}
	return []error{e.Class}
}

// Refuse returns an AttackError of class.
func Refuse(class error, format string, args ...any) error { return refuse(class, format, args...) }

func refuse(class error, format string, args ...any) error {
	return &AttackError{Class: class, Detail: fmt.Sprintf(format, args...)}
}
