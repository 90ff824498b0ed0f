package release

import (
	"encoding/json"
	"errors"
	"io/fs"

	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

// InstalledVersion returns the version a client has recorded as installed
// in its state directory ("" for none), for the external tests to check
// what survives a power cut.
func InstalledVersion(fsys durable.FS) (string, error) {
	b, err := fsys.ReadFile(stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return "", err
	}
	return st.Installed, nil
}

// TrustedFile is the name of the trusted copy of role's metadata in a
// client's state directory.
func TrustedFile(role string) string {
	switch role {
	case RoleRoot:
		return stateRoot
	case RoleTimestamp:
		return stateTimestamp
	case RoleSnapshot:
		return stateSnapshot
	case RoleTargets:
		return stateTargets
	}
	panic("unknown role " + role)
}
