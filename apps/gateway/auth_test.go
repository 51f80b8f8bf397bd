package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	aliceKey = "alice-key-0123456789abcdef"
	bobKey   = "bob-key-0123456789abcdef00"
)

func writeKeys(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, content, wantErr string
		wantNames              int
	}{
		{"two keys, comments and blanks", "# keys\nalice:" + aliceKey + "\n\n bob : " + bobKey + " \n", "", 2},
		{"no colon", "alice " + aliceKey + "\n", "want name:key", 0},
		{"short key", "alice:short\n", "at least 16", 0},
		{"name twice", "alice:" + aliceKey + "\nalice:" + bobKey + "\n", "appears twice", 0},
		{"empty", "# nothing\n", "holds no key", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := LoadKeys(writeKeys(t, tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), aliceKey) || strings.Contains(err.Error(), "short\n") {
					t.Fatalf("the error shows a key: %v", err)
				}
				return
			}
			if err != nil || len(k.names) != tt.wantNames {
				t.Fatalf("LoadKeys = %v, %v; want %d keys", k, err, tt.wantNames)
			}
			if s := k.String(); strings.Contains(s, aliceKey) {
				t.Fatalf("String() shows a key: %s", s)
			}
		})
	}
}

func TestConfigRefusesAnOpenAPIOffLoopback(t *testing.T) {
	t.Parallel()
	keys := writeKeys(t, "alice:"+aliceKey+"\n")
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr bool
	}{
		{"loopback, no keys", map[string]string{}, false},
		{"every interface, no keys", map[string]string{"PUBLIC_HOST": "0.0.0.0"}, true},
		{"every interface, keys", map[string]string{"PUBLIC_HOST": "0.0.0.0", "API_KEYS_FILE": keys}, false},
		{"every interface, open on purpose", map[string]string{"PUBLIC_HOST": "0.0.0.0", "ALLOW_ANONYMOUS": "true"}, false},
		{"a keys file that is not there", map[string]string{"API_KEYS_FILE": keys + ".missing"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(func(k string) string { return tt.vars[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("Load: %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// With keys, every route needs one; a task is visible only to the key that submitted
// it (404 to the others); idempotency keys are per API key.
func TestKeysGuardTheAPI(t *testing.T) {
	t.Parallel()
	k, err := LoadKeys(writeKeys(t, "alice:"+aliceKey+"\nbob:"+bobKey+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, &APIConfig{Keys: k})
	do := func(method, path, key, idem, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if idem != "" {
			req.Header.Set("Idempotency-Key", idem)
		}
		return e.serve(req)
	}
	submit := `{"task":"sleep","payload":{"ms":1},"directory":"auth"}`
	for _, c := range []struct{ method, path, key string }{
		{http.MethodPost, routeTasks, ""},
		{http.MethodPost, routeTasks, "wrong-key-0123456789abcdef"},
		{http.MethodGet, routeTaskTypes, ""},
		{http.MethodGet, routeOverview, ""},
		{http.MethodGet, routeTasks + "/3f2b8c1e-9a4d-4e7f-8b1a-2c3d4e5f6a7b/events", ""},
	} {
		rec := do(c.method, c.path, c.key, "", submit)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s with key %q = %d, want 401 with WWW-Authenticate", c.method, c.path, c.key, rec.Code)
		}
	}
	rec := do(http.MethodPost, routeTasks, aliceKey, "same", submit)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("alice's submit = %d %s", rec.Code, rec.Body)
	}
	var v taskView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{taskPath(v.ID), taskPath(v.ID) + "/result", taskPath(v.ID) + "/events"} {
		if rec := do(http.MethodGet, path, bobKey, "", ""); rec.Code != http.StatusNotFound {
			t.Errorf("bob: GET %s = %d, want 404", path, rec.Code)
		}
	}
	if rec := do(http.MethodDelete, taskPath(v.ID), bobKey, "", ""); rec.Code != http.StatusNotFound {
		t.Errorf("bob: DELETE alice's task = %d, want 404", rec.Code)
	}
	if rec := do(http.MethodDelete, taskPath(v.ID), "", "", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("no key: DELETE = %d, want 401", rec.Code)
	}
	if rec := do(http.MethodGet, taskPath(v.ID), aliceKey, "", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"pending"`) {
		t.Errorf("alice: GET her task = %d %s, want 200, still pending", rec.Code, rec.Body)
	}
	// Bob's idempotency key "same" is his own: a new task, not alice's.
	rec = do(http.MethodPost, routeTasks, bobKey, "same", submit)
	var w taskView
	if rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &w) != nil || w.ID == v.ID {
		t.Fatalf("bob's submit with alice's idempotency key = %d %s, want a task of his own", rec.Code, rec.Body)
	}
	if got := e.backend.submitCalls(); len(got) != 2 || got[0].rec.Owner != "alice" || got[1].rec.Owner != "bob" {
		t.Fatalf("submits %+v: want alice's then bob's, with their owners", got)
	}
}
