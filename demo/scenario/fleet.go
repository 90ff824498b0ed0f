package scenario

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/server/servertest"
)

// GuestHost is where a QEMU guest on user networking reaches the host's
// loopback.
const GuestHost = "10.0.2.2"

// RepositoryName is the name the scenario's repository is published
// under on its fleet server.
const RepositoryName = "main"

// Fleet is the scenario's fleet server: pkg/server on the host's
// loopback (servertest: SQLite and the release storage in a directory),
// with the scenario's repository published (by path, verified against
// its root).
type Fleet struct {
	*servertest.Server
	// GuestURL is the server as a QEMU guest reaches it.
	GuestURL string
	board    string
}

// StartFleet starts the fleet server in dir, made afresh, listening on
// listen ("" any port of 127.0.0.1), and publishes the repository.
func (s *Scenario) StartFleet(ctx context.Context, dir, listen string) (*Fleet, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	srv, err := servertest.Start(ctx, servertest.Options{Dir: dir, Root: s.Root, Listen: listen})
	if err != nil {
		return nil, fmt.Errorf("fleet server: %w", err)
	}
	repo, err := filepath.Abs(s.Repo)
	if err != nil {
		srv.Close()
		return nil, err
	}
	if err := srv.Publish(ctx, RepositoryName, repo); err != nil {
		srv.Close()
		return nil, fmt.Errorf("fleet server: %w", err)
	}
	return &Fleet{Server: srv, GuestURL: fmt.Sprintf("http://%s:%d", GuestHost, srv.Port), board: s.Board.Name}, nil
}

// Enroll does what the manufacturing line does for a device flashed with
// release 1: an identity naming the fleet server as the guest reaches
// it, registered with the server. It returns the identity's file, in
// dir, as Spec.EnvFiles wants it.
func (fl *Fleet) Enroll(ctx context.Context, dir, deviceID string) (map[string]string, error) {
	id, err := identity.New(deviceID, fl.board, rand.Reader)
	if err != nil {
		return nil, err
	}
	id.Server = fl.GuestURL
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := identity.Write(durable.OS(dir), id); err != nil {
		return nil, err
	}
	reg, err := id.Registration(Versions[0])
	if err != nil {
		return nil, err
	}
	if err := fl.Register(ctx, reg); err != nil {
		return nil, err
	}
	return map[string]string{identity.Name: filepath.Join(dir, filepath.FromSlash(identity.Name))}, nil
}

// RepoURL is the published repository as the guest reaches it.
func (fl *Fleet) RepoURL() string {
	return fl.GuestURL + "/repo/" + RepositoryName + "/"
}

// CheckUI signs in to the web UI and checks the device's page says it
// runs version, installed.
func (fl *Fleet) CheckUI(ctx context.Context, deviceID, version string) error {
	page, err := fl.UIPage(ctx, "/ui/devices/"+deviceID)
	if err != nil {
		return err
	}
	for _, want := range []string{"<dt>Version</dt><dd>" + version + "</dd>", "<dt>Status</dt><dd>installed</dd>"} {
		if !strings.Contains(page, want) {
			return fmt.Errorf("the UI's page of device %s lacks %q", deviceID, want)
		}
	}
	return nil
}
