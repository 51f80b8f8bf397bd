package appserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/adapters/sidecar"
	"github.com/taskgrid/taskgrid/internal/platform/env"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		vars    map[string]string
		want    Config
		wantErr string
	}{
		{"defaults", nil, Config{AppID: "gateway", Instance: hostname(), Host: "127.0.0.1", Port: 8090, PublicHost: "127.0.0.1", PublicPort: 8080, LogLevel: "info",
			Sidecar: sidecar.Config{Host: "127.0.0.1", HTTPPort: 3500, GRPCPort: 50001}}, ""},
		{"from dapr run", map[string]string{"APP_ID": "gw2", "APP_PORT": "9000", "PUBLIC_PORT": "9001", "DAPR_HTTP_PORT": "3600", "DAPR_GRPC_PORT": "31001", "NODE_ID": "gw-7",
			"APP_API_TOKEN": "app-secret", "DAPR_API_TOKEN": "dapr-secret", "PUBLIC_HOST": "0.0.0.0"},
			Config{AppID: "gw2", Instance: "gw-7", Host: "127.0.0.1", Port: 9000, PublicHost: "0.0.0.0", PublicPort: 9001, AppToken: "app-secret", LogLevel: "info",
				Sidecar: sidecar.Config{Host: "127.0.0.1", HTTPPort: 3600, GRPCPort: 31001, APIToken: "dapr-secret"}}, ""},
		{"one port for both listeners", map[string]string{"APP_PORT": "9000", "PUBLIC_PORT": "9000"}, Config{}, "PUBLIC_PORT"},
		{"bad sidecar port", map[string]string{"DAPR_GRPC_PORT": "70000"}, Config{}, "DAPR_GRPC_PORT"},
		{"bad port", map[string]string{"APP_PORT": "http"}, Config{}, "APP_PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := env.New(func(k string) string { return tt.vars[k] })
			got := LoadConfig(r, "gateway", 8080)
			err := r.Err()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadyzReportsEveryCheck(t *testing.T) {
	t.Parallel()
	srv := New(slog.New(slog.NewTextHandler(io.Discard, nil)), Config{AppID: "worker"}, prometheus.NewRegistry())
	failing := true
	srv.AddCheck("ok", func(context.Context) error { return nil })
	srv.AddCheck("sidecar", func(context.Context) error {
		if failing {
			return errors.New("not ready")
		}
		return nil
	})
	ts := httptest.NewServer(srv.Router)
	defer ts.Close()

	for _, tt := range []struct {
		failing bool
		code    int
	}{{true, http.StatusServiceUnavailable}, {false, http.StatusOK}} {
		failing = tt.failing
		resp, err := http.Get(ts.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			AppID  string            `json:"app_id"`
			Checks map[string]string `json:"checks"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || body.AppID != "worker" || body.Checks["ok"] != "ok" {
			t.Fatalf("failing=%v: /readyz = %d %+v, want %d", tt.failing, resp.StatusCode, body, tt.code)
		}
		if tt.failing && body.Checks["sidecar"] != "not ready" {
			t.Fatalf("failing check not reported: %+v", body.Checks)
		}
	}

	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(data), `taskgrid_http_requests_total{code="503",method="GET",route="/readyz"} 1`) {
		t.Fatalf("request metrics missing from /metrics:\n%s", data)
	}
}

// /healthz, which daprd probes, answers what SetLive last said.
func TestHealthzFollowsSetLive(t *testing.T) {
	t.Parallel()
	s := New(slog.New(slog.DiscardHandler), Config{}, prometheus.NewRegistry())
	probe := func() int {
		rec := httptest.NewRecorder()
		s.Router.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code
	}
	for i, step := range []struct {
		live bool
		want int
	}{{true, http.StatusOK}, {false, http.StatusServiceUnavailable}, {true, http.StatusOK}} {
		if i > 0 || !step.live {
			s.SetLive(step.live)
		}
		if got := probe(); got != step.want {
			t.Errorf("step %d (live %v): /healthz %d, want %d", i, step.live, got, step.want)
		}
	}
}

// The app channel takes only calls with the sidecar's token (but the health probe), and
// the two listeners route nothing of each other's.
func TestChannelNeedsTheAppToken(t *testing.T) {
	t.Parallel()
	s := New(slog.New(slog.DiscardHandler), Config{AppToken: "app-secret"}, prometheus.NewRegistry())
	s.Channel.Put("/actors/{type}/{id}/method/{m}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	s.Router.Get("/api/v1/tasks", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	tests := []struct {
		name    string
		channel bool
		method  string
		path    string
		token   string
		want    int
	}{
		{"channel: actor call with the token", true, http.MethodPut, "/actors/T/1/method/m", "app-secret", http.StatusOK},
		{"channel: actor call without a token", true, http.MethodPut, "/actors/T/1/method/m", "", http.StatusUnauthorized},
		{"channel: actor call with a wrong token", true, http.MethodPut, "/actors/T/1/method/m", "app-secreT", http.StatusUnauthorized},
		{"channel: unknown path without a token", true, http.MethodGet, "/api/v1/tasks", "", http.StatusUnauthorized},
		{"channel: the public API is not routed", true, http.MethodGet, "/api/v1/tasks", "app-secret", http.StatusNotFound},
		{"channel: health probe without a token", true, http.MethodGet, "/healthz", "", http.StatusOK},
		{"public: the API", false, http.MethodGet, "/api/v1/tasks", "", http.StatusOK},
		{"public: actor calls are not routed", false, http.MethodPut, "/actors/T/1/method/m", "app-secret", http.StatusNotFound},
		{"public: health", false, http.MethodGet, "/healthz", "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := s.Router
			if tt.channel {
				h = s.Channel
			}
			req := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.token != "" {
				req.Header.Set(TokenHeader, tt.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s %s = %d, want %d", tt.method, tt.path, rec.Code, tt.want)
			}
		})
	}
}
