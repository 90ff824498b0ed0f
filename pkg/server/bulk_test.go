package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
)

// bulkBody is a bulk registration of n new devices, bulk-0 to bulk-(n-1),
// after mod has changed them.
func bulkBody(t *testing.T, n int, mod func([]api.Registration)) string {
	t.Helper()
	b := api.BulkRegistration{Devices: make([]api.Registration, n)}
	for i := range b.Devices {
		b.Devices[i] = api.Registration{DeviceID: fmt.Sprintf("bulk-%d", i), Board: "qemu-x86_64", Version: "1.0",
			TokenSHA256: fmt.Sprintf("%064x", 0xb000+i)}
	}
	if mod != nil {
		mod(b.Devices)
	}
	enc, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(enc)
}

// TestBulkRegister registers a batch of devices in one request: all of
// them are stored, readable and authenticate, and the audit log has one
// entry with the count.
func TestBulkRegister(t *testing.T) { storetest.Run(t, testBulkRegister) }

func testBulkRegister(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	exp := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	tokens := map[string]string{}
	body := bulkBody(t, api.MaxBulkRegistrations, func(rs []api.Registration) {
		for i := range rs {
			tok, sha := f.token()
			rs[i].TokenSHA256, tokens[rs[i].DeviceID] = sha, tok
		}
		rs[7].TokenExpires = &exp
	})
	w := f.do(req{method: "POST", path: "/api/v1/devices/bulk", token: f.op["operator"], ctype: "application/json", body: body})
	if w.Code != http.StatusCreated {
		t.Fatalf("bulk register = %d %s, want 201", w.Code, w.Body)
	}
	var got api.BulkRegistered
	decodeJSON(t, w, &got)
	if got.Registered != api.MaxBulkRegistrations {
		t.Errorf("bulk register = %+v, want %d registered", got, api.MaxBulkRegistrations)
	}
	for _, id := range []string{"bulk-0", "bulk-7", "bulk-999"} {
		d, err := f.srv.Device(context.Background(), id)
		want := api.Device{ID: id, Board: "qemu-x86_64", InstalledVersion: "1.0", Created: t0, Attributes: map[string]string{}}
		if id == "bulk-7" {
			want.TokenExpires = &exp
		}
		if err != nil || !cmp.Equal(want, d) {
			t.Errorf("Device(%s) = %+v, %v; want %+v", id, d, err, want)
		}
		if w := f.do(req{method: "GET", path: "/api/v1/device/poll", token: tokens[id]}); w.Code != http.StatusOK {
			t.Errorf("poll as %s = %d %s, want 200", id, w.Code, w.Body)
		}
	}
	evs, err := f.st.Events(context.Background(), 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if e := evs[0]; e.Action != "device.register_bulk" || e.Actor != "operator:operator" || e.Target != "1000 devices" ||
		e.Detail != `{"count":1000,"first":"bulk-0","last":"bulk-999"}` || evs[1].Action != "setup" {
		t.Errorf("audit log, newest first = %+v, want one device.register_bulk of 1000 devices after the setup", evs)
	}
}

// TestBulkRegisterRefusals: a bad entry, one registered already, a batch
// too large, a role too low: each a 4xx naming the entry or the limit,
// and nothing registered.
func TestBulkRegisterRefusals(t *testing.T) { storetest.Run(t, testBulkRegisterRefusals) }

func testBulkRegisterRefusals(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	const js = "application/json"
	path := "/api/v1/devices/bulk"
	op := f.op["operator"]
	past := t0.Add(-time.Hour)
	huge := `{"devices": [` + strings.Repeat(" ", api.MaxBulkBodySize) + `]}`
	f.checkRefusals(t, []refusalCase{
		{"no token", req{method: "POST", path: path, ctype: js, body: bulkBody(t, 2, nil)}, 401, api.CodeUnauthorized, "no operator token"},
		{"device token", req{method: "POST", path: path, token: f.dev["dev-x"], ctype: js, body: bulkBody(t, 2, nil)}, 401, api.CodeUnauthorized, "unknown operator token"},
		{"viewer", req{method: "POST", path: path, token: f.op["viewer"], ctype: js, body: bulkBody(t, 2, nil)}, 403, api.CodeForbidden, "to register devices needs role operator"},
		{"text/plain", req{method: "POST", path: path, token: op, ctype: "text/plain", body: bulkBody(t, 2, nil)}, 415, api.CodeUnsupportedType, "want application/json"},
		{"not JSON", req{method: "POST", path: path, token: op, ctype: js, body: "[]"}, 400, api.CodeBadRequest, "malformed JSON"},
		{"unknown field", req{method: "POST", path: path, token: op, ctype: js, body: `{"devices": [], "force": true}`}, 400, api.CodeBadRequest, `unknown field "force"`},
		{"no devices", req{method: "POST", path: path, token: op, ctype: js, body: `{"devices": []}`}, 400, api.CodeBadRequest, "0 devices: want 1 to 1000"},
		{"too many", req{method: "POST", path: path, token: op, ctype: js, body: bulkBody(t, api.MaxBulkRegistrations+1, nil)}, 400, api.CodeBadRequest, "1001 devices: want 1 to 1000"},
		{"too large", req{method: "POST", path: path, token: op, ctype: js, body: huge}, 413, api.CodeTooLarge, "over 1048576 bytes"},
		{"too large, streamed", req{method: "POST", path: path, token: op, ctype: js, body: huge, chunked: true}, 413, api.CodeTooLarge, "over 1048576 bytes"},
		{"bad entry", req{method: "POST", path: path, token: op, ctype: js, body: bulkBody(t, 3, func(rs []api.Registration) { rs[2].TokenSHA256 = "abc" })},
			400, api.CodeBadRequest, "devices[2] (bulk-2): token_sha256"},
		{"unknown field in an entry", req{method: "POST", path: path, token: op, ctype: js, body: `{"devices": [{"device_id": "a", "token": "secret"}]}`},
			400, api.CodeBadRequest, `unknown field "token"`},
		{"expired entry", req{method: "POST", path: path, token: op, ctype: js, body: bulkBody(t, 3, func(rs []api.Registration) { rs[1].TokenExpires = &past })},
			400, api.CodeBadRequest, "devices[1] (bulk-1): token_expires 2026-11-26T11:00:00Z: in the past"},
		{"ID twice", req{method: "POST", path: path, token: op, ctype: js, body: bulkBody(t, 3, func(rs []api.Registration) { rs[2].DeviceID = "bulk-0" })},
			400, api.CodeBadRequest, "devices[2] (bulk-0): device_id given at devices[0] too"},
		{"token twice", req{method: "POST", path: path, token: op, ctype: js, body: bulkBody(t, 3, func(rs []api.Registration) { rs[1].TokenSHA256 = rs[0].TokenSHA256 })},
			400, api.CodeBadRequest, "devices[1] (bulk-1): token_sha256 given at devices[0] too"},
		{"ID registered", req{method: "POST", path: path, token: op, ctype: js, body: bulkBody(t, 500, func(rs []api.Registration) { rs[300].DeviceID = "dev-y" })},
			409, api.CodeConflict, "devices[300] (dev-y): already exists (its ID is registered)"},
		{"token registered", req{method: "POST", path: path, token: op, ctype: js, body: bulkBody(t, 500, func(rs []api.Registration) { rs[499].TokenSHA256 = f.devSH["dev-revoked"] })},
			409, api.CodeConflict, "devices[499] (bulk-499): already exists (its token is registered to another device)"},
		{"GET", req{method: "GET", path: path, token: op}, 404, api.CodeNotFound, "bulk: not found"},
	})
}
