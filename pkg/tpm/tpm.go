package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// DefaultDevice is the kernel's TPM resource manager device.
const DefaultDevice = "/dev/tpmrm0"

// Errors callers branch on. TPM errors are wrapped as well, so
// errors.Is(err, tpm2.TPMRCPolicyFail) also works.
var (
	// ErrPolicy means a sealed object's policy was not satisfied: a PCR no
	// longer holds the value the object was sealed to.
	ErrPolicy = errors.New("tpm: PCR policy not satisfied")
	// ErrAuth means a wrong or missing PIN.
	ErrAuth = errors.New("tpm: authorization failed")
	// ErrLockout means the TPM is in dictionary-attack lockout.
	ErrLockout = errors.New("tpm: dictionary-attack lockout")
	// ErrMalformed means a sealed blob could not be parsed.
	ErrMalformed = errors.New("tpm: malformed sealed blob")
	// ErrNoCounter means the counter's NV index is not defined (or never
	// incremented).
	ErrNoCounter = errors.New("tpm: counter not defined")
	// ErrCounterMismatch means the NV index exists but is not a counter with
	// the attributes this package defines.
	ErrCounterMismatch = errors.New("tpm: NV index is not a Lifeboat counter")
	// ErrAdvanceTooFar means AdvanceTo would need more than MaxAdvance
	// increments.
	ErrAdvanceTooFar = errors.New("tpm: counter advance too far")
)

// maxResponse bounds a TPM response; real TPMs answer with at most a few KiB.
const maxResponse = 64 << 10

// TPM is a connection to a TPM 2.0. Its methods are safe for concurrent use;
// each holds the connection for the whole of its command sequence.
type TPM struct {
	mu     sync.Mutex
	rw     io.ReadWriteCloser
	buf    []byte
	broken error // a failed exchange left the stream out of step
}

var (
	_ Sealer   = (*TPM)(nil)
	_ PCRBank  = (*TPM)(nil)
	_ Identity = (*TPM)(nil)

	_ transport.TPM = (*TPM)(nil)
	_ Counter       = (*NVCounter)(nil)
)

// Open opens a TPM character device, usually DefaultDevice. Commands on a
// device block until the TPM answers (the kernel driver bounds each
// command's duration); a context is checked between commands.
func Open(path string) (*TPM, error) {
	f, err := openDevice(path)
	if err != nil {
		return nil, fmt.Errorf("open TPM: %w", err)
	}
	return New(f), nil
}

// New returns a TPM that sends raw TPM 2.0 commands over rw and reads each
// response, delimited by its header's size field. rw is a TPM character
// device or a stream such as swtpm's server socket. Close closes rw.
func New(rw io.ReadWriteCloser) *TPM {
	return &TPM{rw: rw, buf: make([]byte, maxResponse)}
}

// Close closes the connection. Transient objects are flushed by the methods
// that create them; a resource manager flushes anything left over.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rw.Close()
}

// Send sends one raw TPM command and returns the TPM's response, holding the
// connection for its duration: *TPM is a go-tpm transport.TPM, for commands
// this package does not wrap.
func (t *TPM) Send(cmd []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.with(context.Background()).Send(cmd)
}

// with returns a transport for go-tpm commands that honours ctx. Callers hold
// t.mu.
func (t *TPM) with(ctx context.Context) transport.TPM {
	return ctxTransport{t: t, ctx: ctx}
}

type ctxTransport struct {
	t   *TPM
	ctx context.Context
}

// Send implements transport.TPM. It retries the warnings that mean the
// command was not executed (RETRY, YIELDED, TESTING, NV_RATE), backing off
// until ctx is done.
func (c ctxTransport) Send(cmd []byte) ([]byte, error) {
	backoff := time.Millisecond
	for {
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		rsp, err := c.t.roundTrip(c.ctx, cmd)
		if err != nil {
			return nil, err
		}
		switch rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting, tpm2.TPMRCNVRate:
			timer := time.NewTimer(backoff)
			select {
			case <-c.ctx.Done():
				timer.Stop()
				return nil, fmt.Errorf("%w (TPM busy: %v)", c.ctx.Err(), rc)
			case <-timer.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		return rsp, nil
	}
}

// roundTrip writes one command and reads one response. After an I/O or
// framing error the command and response streams may be out of step, so
// every later exchange fails with the same error.
func (t *TPM) roundTrip(ctx context.Context, cmd []byte) ([]byte, error) {
	if t.broken != nil {
		return nil, fmt.Errorf("TPM connection unusable after earlier error: %w", t.broken)
	}
	rsp, err := t.exchange(ctx, cmd)
	if err != nil {
		t.broken = err
	}
	return rsp, err
}

func (t *TPM) exchange(ctx context.Context, cmd []byte) ([]byte, error) {
	if d, ok := t.rw.(net.Conn); ok { // a device file has no deadlines
		dl, _ := ctx.Deadline() // zero: no deadline
		if err := d.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("TPM set deadline: %w", err)
		}
	}
	if _, err := t.rw.Write(cmd); err != nil {
		return nil, fmt.Errorf("TPM write command (%d bytes): %w", len(cmd), err)
	}
	// A character device returns the whole response to one read; a stream
	// socket may split it, so finish with ReadFull once the header says how
	// long it is.
	n, err := t.rw.Read(t.buf)
	if err != nil {
		return nil, fmt.Errorf("TPM read response: %w", err)
	}
	if n < 10 {
		m, err := io.ReadFull(t.rw, t.buf[n:10])
		if err != nil {
			return nil, fmt.Errorf("TPM read response header: %w", err)
		}
		n += m
	}
	size := int(binary.BigEndian.Uint32(t.buf[2:6]))
	if size < 10 || size > len(t.buf) {
		return nil, fmt.Errorf("TPM response size %d out of range [10, %d]", size, len(t.buf))
	}
	if n < size {
		if _, err := io.ReadFull(t.rw, t.buf[n:size]); err != nil {
			return nil, fmt.Errorf("TPM read response (%d of %d bytes): %w", n, size, err)
		}
	} else if n > size {
		return nil, fmt.Errorf("TPM response: read %d bytes, header says %d", n, size)
	}
	return append([]byte(nil), t.buf[:size]...), nil
}

// classify wraps a TPM error with the sentinel callers branch on.
func classify(err error) error {
	switch {
	case errors.Is(err, tpm2.TPMRCPolicyFail):
		return fmt.Errorf("%w: %w", ErrPolicy, err)
	case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
		return fmt.Errorf("%w: %w", ErrAuth, err)
	case errors.Is(err, tpm2.TPMRCLockout):
		return fmt.Errorf("%w: %w", ErrLockout, err)
	}
	return err
}

// flush flushes a transient handle, even when ctx is already cancelled.
func flush(ctx context.Context, t *TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t.with(context.WithoutCancel(ctx)))
}

// primary is a loaded primary key.
type primary struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public tpm2.TPMTPublic
}

func (p primary) named() tpm2.NamedHandle { return tpm2.NamedHandle{Handle: p.handle, Name: p.name} }

// createPrimary creates a primary key in the owner hierarchy (empty owner
// authorization). The caller flushes it.
func (t *TPM) createPrimary(ctx context.Context, template tpm2.TPMTPublic) (primary, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(template),
	}.Execute(t.with(ctx))
	if err != nil {
		return primary{}, fmt.Errorf("TPM2_CreatePrimary(owner): %w", classify(err))
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(ctx, t, rsp.ObjectHandle)
		return primary{}, fmt.Errorf("TPM2_CreatePrimary(owner): public area: %w", err)
	}
	return primary{handle: rsp.ObjectHandle, name: rsp.Name, public: *pub}, nil
}

// createSRK creates the storage root key, the TCG reference ECC P-256 SRK.
func (t *TPM) createSRK(ctx context.Context) (primary, error) {
	return t.createPrimary(ctx, tpm2.ECCSRKTemplate)
}
