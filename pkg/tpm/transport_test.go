package tpm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/lifeboat-update/lifeboat/pkg/tpm"
)

// scriptedTPM answers each command read from conn with the next of
// responses, written in chunks of chunk bytes.
func scriptedTPM(t *testing.T, conn net.Conn, chunk int, responses ...[]byte) {
	t.Helper()
	go func() {
		defer conn.Close()
		for _, rsp := range responses {
			hdr := make([]byte, 10)
			if _, err := io.ReadFull(conn, hdr); err != nil {
				return
			}
			if _, err := io.CopyN(io.Discard, conn, int64(binary.BigEndian.Uint32(hdr[2:6]))-10); err != nil {
				return
			}
			for len(rsp) > 0 {
				n := min(chunk, len(rsp))
				if _, err := conn.Write(rsp[:n]); err != nil {
					return
				}
				rsp = rsp[n:]
			}
		}
	}()
}

// response is a TPM response with code rc and parameters.
func response(rc tpm2.TPMRC, params []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTNoSessions))
	b = binary.BigEndian.AppendUint32(b, uint32(10+len(params)))
	b = binary.BigEndian.AppendUint32(b, uint32(rc))
	return append(b, params...)
}

func TestTransport(t *testing.T) {
	random := bytes.Repeat([]byte{0xEE}, 48)
	ok := response(tpm2.TPMRCSuccess, append([]byte{0, byte(len(random))}, random...))
	for _, tc := range []struct {
		name      string
		chunk     int
		responses [][]byte
		wantErr   bool
	}{
		{"whole", 4096, [][]byte{ok}, false},
		{"byte by byte", 1, [][]byte{ok}, false},
		{"header split", 7, [][]byte{ok}, false},
		{"retried", 4096, [][]byte{response(tpm2.TPMRCRetry, nil), response(tpm2.TPMRCYielded, nil), ok}, false},
		{"TPM error", 4096, [][]byte{response(tpm2.TPMRCValue, nil)}, true},
		{"size below header", 4096, [][]byte{{0x80, 0x01, 0, 0, 0, 5, 0, 0, 0, 0}}, true},
		{"size too large", 4096, [][]byte{{0x80, 0x01, 0x7f, 0, 0, 0, 0, 0, 0, 0}}, true},
		{"connection closed", 4096, nil, true},
		{"truncated", 4096, [][]byte{ok[:20]}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			scriptedTPM(t, server, tc.chunk, tc.responses...)
			tp := tpm.New(client)
			defer tp.Close()
			rsp, err := tpm2.GetRandom{BytesRequested: uint16(len(random))}.Execute(tp)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("GetRandom() = %x, nil, want an error", rsp.RandomBytes.Buffer)
				}
				t.Logf("error: %v", err)
				if _, err2 := (tpm2.GetRandom{BytesRequested: 1}).Execute(tp); err2 == nil && !errors.Is(err, tpm2.TPMRCValue) {
					t.Fatalf("GetRandom() after %v = nil error, want the connection refused", err)
				}
				return
			}
			if err != nil || !bytes.Equal(rsp.RandomBytes.Buffer, random) {
				t.Fatalf("GetRandom() = %v, want %x", err, random)
			}
		})
	}
}
