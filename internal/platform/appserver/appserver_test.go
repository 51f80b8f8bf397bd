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
		{"defaults", nil, Config{AppID: "gateway", Instance: hostname(), Host: "127.0.0.1", Port: 8080, LogLevel: "info",
			Sidecar: sidecar.Config{Host: "127.0.0.1", HTTPPort: 3500, GRPCPort: 50001}}, ""},
		{"from dapr run", map[string]string{"APP_ID": "gw2", "APP_PORT": "9000", "DAPR_HTTP_PORT": "3600", "DAPR_GRPC_PORT": "31001", "NODE_ID": "gw-7"},
			Config{AppID: "gw2", Instance: "gw-7", Host: "127.0.0.1", Port: 9000, LogLevel: "info",
				Sidecar: sidecar.Config{Host: "127.0.0.1", HTTPPort: 3600, GRPCPort: 31001}}, ""},
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
