package actorhost

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

type fakeActor struct {
	calls       []string
	deactivated []string
}

func (f *fakeActor) Invoke(_ context.Context, id, method string, body []byte) ([]byte, error) {
	f.calls = append(f.calls, id+"."+method+":"+string(body))
	switch method {
	case "echo":
		return body, nil
	case "fail":
		return nil, errors.New("busy: slot has a task")
	}
	return nil, ErrMethodNotFound
}

func (f *fakeActor) Remind(_ context.Context, id, name string, data []byte) (bool, error) {
	f.calls = append(f.calls, id+" remind "+name+":"+string(data))
	return name == "once", nil
}

func (f *fakeActor) Deactivate(_ context.Context, id string) {
	f.deactivated = append(f.deactivated, id)
}

func TestHostProtocol(t *testing.T) {
	t.Parallel()
	actor := &fakeActor{}
	h := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	h.Register("Worker", actor)
	r := chi.NewRouter()
	h.Mount(r)
	ts := httptest.NewServer(r)
	defer ts.Close()

	do := func(method, path, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	resp := do(http.MethodGet, "/dapr/config", "")
	var cfg struct {
		Entities    []string `json:"entities"`
		IdleTimeout string   `json:"actorIdleTimeout"`
		Reentrancy  struct {
			Enabled bool `json:"enabled"`
		} `json:"reentrancy"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil || len(cfg.Entities) != 1 || cfg.Entities[0] != "Worker" || cfg.IdleTimeout != "1h0m0s" || cfg.Reentrancy.Enabled {
		t.Fatalf("config = %+v, %v", cfg, err)
	}

	tests := []struct {
		name, method, path, body string
		code                     int
		wantBody                 string
		cancelHeader             string
	}{
		{"invoke", http.MethodPut, "/actors/Worker/w1/method/echo", `{"a":1}`, 200, `{"a":1}`, ""},
		{"actor error is 500 with message", http.MethodPut, "/actors/Worker/w1/method/fail", ``, 500, "busy: slot has a task", ""},
		{"unknown method is 404", http.MethodPut, "/actors/Worker/w1/method/nope", ``, 404, "actor method not found", ""},
		{"unknown type is 404", http.MethodPut, "/actors/Queue/q/method/echo", ``, 404, "unknown actor type", ""},
		{"reminder keeps", http.MethodPut, "/actors/Worker/w2/method/remind/watchdog", `{}`, 200, "", ""},
		{"reminder cancels", http.MethodPut, "/actors/Worker/w2/method/remind/once", `{}`, 200, "", "true"},
		{"reminder with JSON data", http.MethodPut, "/actors/Worker/w4/method/remind/watchdog", `{"data":{"task":"t1"},"dueTime":"1s","period":"1s"}`, 200, "", ""},
		{"reminder with base64 data", http.MethodPut, "/actors/Worker/w5/method/remind/watchdog", `{"data":"eyJ0YXNrIjoidDIifQ=="}`, 200, "", ""},
		{"reminder with bad body", http.MethodPut, "/actors/Worker/w6/method/remind/watchdog", `{"data":`, 400, "decode reminder", ""},
		{"deactivate", http.MethodDelete, "/actors/Worker/w3", ``, 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(tt.method, tt.path, tt.body)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("%s %s = %d %q, want %d %q", tt.method, tt.path, resp.StatusCode, body, tt.code, tt.wantBody)
			}
			if got := resp.Header.Get("X-Daprremindercancel"); got != tt.cancelHeader {
				t.Fatalf("cancel header = %q, want %q", got, tt.cancelHeader)
			}
		})
	}
	for _, want := range []string{"w4 remind watchdog:{\"task\":\"t1\"}", "w5 remind watchdog:{\"task\":\"t2\"}", "w2 remind watchdog:"} {
		if !slices.Contains(actor.calls, want) {
			t.Errorf("calls = %q, want %q among them", actor.calls, want)
		}
	}
	if len(actor.deactivated) != 1 || actor.deactivated[0] != "w3" {
		t.Fatalf("deactivated = %v", actor.deactivated)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	t.Parallel()
	h := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	h.Register("Worker", &fakeActor{})
	defer func() {
		if recover() == nil {
			t.Fatal("second Register of the same type did not panic")
		}
	}()
	h.Register("Worker", &fakeActor{})
}
