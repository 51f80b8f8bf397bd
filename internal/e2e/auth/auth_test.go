// Package auth tests the gateway with API keys on the real stack: every route needs a
// key, and a task is visible only to the key that submitted it.
package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

const (
	aliceKey = "alice-0123456789abcdef0123456789abcdef"
	bobKey   = "bob-0123456789abcdef0123456789abcdef00"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskgrid-keys-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte("alice:"+aliceKey+"\nbob:"+bobKey+"\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := stacktest.Run(m, stacktest.Options{
		Apps:   []string{"storekeeper", "worker", "gateway"},
		AppEnv: map[string]map[string]string{"gateway": {"API_KEYS_FILE": keys}, "worker": {"POOL_SIZE": "2"}},
	})
	os.RemoveAll(dir)
	os.Exit(code)
}

func client(st *stacktest.Stack, key string) stacktest.Gateway {
	g := st.Gateway()
	if key != "" {
		g.Header = map[string]string{"Authorization": "Bearer " + key}
	}
	return g
}

func TestAnotherKeysTaskIsNotFound(t *testing.T) {
	st := stacktest.Get(t)
	ctx := t.Context()
	alice, bob, nobody := client(st, aliceKey), client(st, bobKey), client(st, "")

	v, _, err := alice.SubmitRetrying(ctx, "sleep", map[string]any{"ms": 50}, "auth/alice") // the queue may still be placing
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitStatus(ctx, v.ID, "completed"); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"", "/result", "/events"} {
		resp, err := bob.Do(ctx, http.MethodGet, "/api/v1/tasks/"+v.ID+path, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code != http.StatusNotFound {
			t.Errorf("bob: GET %s = %d %s, want 404", path, resp.Code, resp.Body)
		}
		resp, err = nobody.Do(ctx, http.MethodGet, "/api/v1/tasks/"+v.ID+path, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code != http.StatusUnauthorized {
			t.Errorf("no key: GET %s = %d, want 401", path, resp.Code)
		}
	}
	resp, err := alice.Do(ctx, http.MethodGet, "/api/v1/tasks/"+v.ID+"/result", nil, nil)
	if err != nil || resp.Code != http.StatusOK || !json.Valid(resp.Body) {
		t.Fatalf("alice: GET her result = %d %s (%v), want 200 with JSON", resp.Code, resp.Body, err)
	}
	body := []byte(`{"task":"sleep","payload":{"ms":1},"directory":"auth/nobody"}`)
	if resp, err := nobody.Do(ctx, http.MethodPost, "/api/v1/tasks", body, nil); err != nil || resp.Code != http.StatusUnauthorized ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no key: submit = %d (%v), want 401 with WWW-Authenticate", resp.Code, err)
	}
	// The web page is not behind the key (it asks for one).
	if resp, err := nobody.Do(ctx, http.MethodGet, "/", nil, nil); err != nil || resp.Code != http.StatusOK {
		t.Fatalf("web page = %d (%v), want 200", resp.Code, err)
	}
}
