package blockdev

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// GUID is a GPT GUID, held in the byte order of its text form
// (00112233-4455-6677-8899-aabbccddeeff is {0x00, 0x11, ...}). GPT stores
// the first three fields little-endian; [GUID.encode] and [decodeGUID]
// convert.
type GUID [16]byte

// Well-known partition type GUIDs (UEFI and the Discoverable Partitions
// Specification).
var (
	TypeEFISystem             = MustParseGUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
	TypeBIOSBoot              = MustParseGUID("21686148-6449-6e6f-744e-656564454649")
	TypeMicrosoftBasicData    = MustParseGUID("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7")
	TypeLinuxFilesystem       = MustParseGUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
	TypeLinuxSwap             = MustParseGUID("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f")
	TypeLinuxHome             = MustParseGUID("933ac7e1-2eb4-4f13-b844-0e14e2aef915")
	TypeLinuxVar              = MustParseGUID("4d21b016-b534-45c2-a9fb-5c16e091fd2d")
	TypeLinuxExtendedBoot     = MustParseGUID("bc13c2ff-59e6-4262-a352-b275fd6f7172")
	TypeLinuxLUKS             = MustParseGUID("ca7d7ccb-63ed-4c53-861c-1742536059cc")
	TypeLinuxRootX86          = MustParseGUID("44479540-f297-41b2-9af7-d131d5f0458a")
	TypeLinuxRootX86_64       = MustParseGUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
	TypeLinuxRootARM          = MustParseGUID("69dad710-2ce4-4e3c-b16c-21a1d49abed3")
	TypeLinuxRootARM64        = MustParseGUID("b921b045-1df0-41c3-af44-4c6f280d3fae")
	TypeLinuxRootVerityX86_64 = MustParseGUID("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5")
	TypeLinuxRootVerityARM64  = MustParseGUID("df3300ce-d69f-4c92-978c-9bfb0f38d820")
	TypeLinuxUsrX86_64        = MustParseGUID("8484680c-9521-48c6-9c11-b0720656f69e")
	TypeLinuxUsrARM64         = MustParseGUID("b0e01050-ee5f-4390-949a-9101b17104e9")
)

// ParseGUID parses the text form of a GUID,
// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, in either case.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("GUID %q: not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	hexs := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(g[:], []byte(hexs)); err != nil {
		return GUID{}, fmt.Errorf("GUID %q: %w", s, err)
	}
	return g, nil
}

// MustParseGUID is ParseGUID for constants; it panics on a malformed GUID.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// NewGUID returns a random (version 4) GUID.
func NewGUID() GUID {
	var g GUID
	rand.Read(g[:])
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g
}

// String returns the text form of g in lower case, as the kernel and udev
// print PARTUUIDs.
func (g GUID) String() string {
	h := hex.EncodeToString(g[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// IsZero reports whether g is all zeros, the type of an unused entry.
func (g GUID) IsZero() bool { return g == GUID{} }

// encode writes g to b in GPT's on-disk byte order.
func (g GUID) encode(b []byte) {
	b[0], b[1], b[2], b[3] = g[3], g[2], g[1], g[0]
	b[4], b[5] = g[5], g[4]
	b[6], b[7] = g[7], g[6]
	copy(b[8:16], g[8:16])
}

// decodeGUID reads a GUID stored in GPT's on-disk byte order.
func decodeGUID(b []byte) GUID {
	var g GUID
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:16], b[8:16])
	return g
}
