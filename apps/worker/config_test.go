package main

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func getenv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Load(getenv(nil))
	if err != nil {
		t.Fatalf("Load(empty) = %v", err)
	}
	host, _ := os.Hostname()
	if cfg.NodeID != host {
		t.Errorf("NodeID = %q, want the host name %q", cfg.NodeID, host)
	}
	if cfg.PoolSize != runtime.NumCPU() {
		t.Errorf("PoolSize = %d, want NumCPU = %d", cfg.PoolSize, runtime.NumCPU())
	}
	if cfg.Retention != 24*time.Hour {
		t.Errorf("Retention = %s, want 24h", cfg.Retention)
	}
	if cfg.DrainTimeout != 30*time.Second {
		t.Errorf("DrainTimeout = %s, want 30s", cfg.DrainTimeout)
	}
	if cfg.SyncGap != 100*time.Millisecond {
		t.Errorf("SyncGap = %s, want 100ms", cfg.SyncGap)
	}
	if cfg.StoreSpacing != 30*time.Millisecond {
		t.Errorf("StoreSpacing = %s, want 30ms", cfg.StoreSpacing)
	}
	if cfg.HeldResultsMax != 256 || cfg.HeldBytesMax != 64<<20 {
		t.Errorf("HeldResultsMax, HeldBytesMax = %d, %d; want 256, 64 MiB", cfg.HeldResultsMax, cfg.HeldBytesMax)
	}
	if cfg.AppID != "worker" || cfg.PublicPort != 8081 || cfg.Port != 8091 {
		t.Errorf("AppID, PublicPort, Port = %q, %d, %d; want worker, 8081, 8091", cfg.AppID, cfg.PublicPort, cfg.Port)
	}
	if got := len(cfg.Slots()); got != runtime.NumCPU() {
		t.Errorf("len(Slots()) = %d, want one per CPU (%d)", got, runtime.NumCPU())
	}
}

func TestLoadValues(t *testing.T) {
	t.Parallel()
	cfg, err := Load(getenv(map[string]string{
		"NODE_ID": " worker-b ", "POOL_SIZE": "3", "WORKER_FAULT_RATE": "0.25", "DRAIN_TIMEOUT": "0s",
		"APP_ID": "w2", "APP_PORT": "9000", "SYNC_GAP": "20ms", "STORE_SPACING": "0s",
	}))
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if cfg.NodeID != "worker-b" || cfg.PoolSize != 3 || cfg.FaultRate != 0.25 || cfg.DrainTimeout != 0 {
		t.Errorf("cfg = {NodeID %q PoolSize %d FaultRate %v DrainTimeout %s}, want {worker-b 3 0.25 0s}",
			cfg.NodeID, cfg.PoolSize, cfg.FaultRate, cfg.DrainTimeout)
	}
	if cfg.SyncGap != 20*time.Millisecond {
		t.Errorf("SyncGap = %s, want 20ms", cfg.SyncGap)
	}
	if cfg.StoreSpacing != 0 {
		t.Errorf("StoreSpacing = %s, want 0 (off)", cfg.StoreSpacing)
	}
	if cfg.AppID != "w2" || cfg.Port != 9000 {
		t.Errorf("AppID, Port = %q, %d; want w2, 9000", cfg.AppID, cfg.Port)
	}
	if want := []string{"worker-b-0", "worker-b-1", "worker-b-2"}; !slices.Equal(cfg.Slots(), want) {
		t.Errorf("Slots() = %v, want %v", cfg.Slots(), want)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, value string
	}{
		{"POOL_SIZE", "0"},
		{"POOL_SIZE", "-2"},
		{"POOL_SIZE", "1025"},
		{"POOL_SIZE", "many"},
		{"POOL_SIZE", "2.5"},
		{"WORKER_FAULT_RATE", "1.5"},
		{"WORKER_FAULT_RATE", "-0.1"},
		{"DRAIN_TIMEOUT", "1"}, // no unit
		{"DRAIN_TIMEOUT", "-1s"},
		{"DRAIN_TIMEOUT", "2h"},
		{"DRAIN_TIMEOUT", "soon"},
		{"SYNC_GAP", "-1ms"},
		{"SYNC_GAP", "501ms"}, // past a heartbeat
		{"SYNC_GAP", "100"},
		{"STORE_SPACING", "-1ms"},
		{"STORE_SPACING", "1001ms"},
		{"STORE_SPACING", "30"},
		{"HELD_RESULTS_MAX", "0"},
		{"HELD_RESULTS_MAX", "1048577"},
		{"HELD_RESULTS_MAX_BYTES", "0"},
		{"HELD_RESULTS_MAX_BYTES", "64MiB"},
		{"APP_PORT", "0"},
		{"DAPR_GRPC_PORT", "70000"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(getenv(map[string]string{tt.key: tt.value}))
			if err == nil {
				t.Fatalf("Load(%s=%q) = nil error, cfg %+v", tt.key, tt.value, cfg)
			}
			if !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), strconv.Quote(tt.value)) {
				t.Errorf("error %q does not name %s=%q", err, tt.key, tt.value)
			}
		})
	}

	t.Run("bounds are accepted", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load(getenv(map[string]string{
			"POOL_SIZE": "1024", "WORKER_FAULT_RATE": "1", "DRAIN_TIMEOUT": "1h", "SYNC_GAP": "500ms", "STORE_SPACING": "1s",
			"HELD_RESULTS_MAX": "1048576", "HELD_RESULTS_MAX_BYTES": "1099511627776",
		}))
		if err != nil {
			t.Fatalf("Load = %v", err)
		}
		if cfg.PoolSize != 1024 || cfg.FaultRate != 1 || cfg.DrainTimeout != time.Hour || cfg.SyncGap != 500*time.Millisecond || cfg.StoreSpacing != time.Second {
			t.Errorf("cfg = %d %v %s %s %s, want 1024 1 1h 500ms 1s", cfg.PoolSize, cfg.FaultRate, cfg.DrainTimeout, cfg.SyncGap, cfg.StoreSpacing)
		}
		if cfg.HeldResultsMax != 1<<20 || cfg.HeldBytesMax != 1<<40 {
			t.Errorf("HeldResultsMax, HeldBytesMax = %d, %d; want 1048576, 1 TiB", cfg.HeldResultsMax, cfg.HeldBytesMax)
		}
	})

	t.Run("every problem is reported at once", func(t *testing.T) {
		t.Parallel()
		_, err := Load(getenv(map[string]string{"POOL_SIZE": "0", "WORKER_FAULT_RATE": "x", "DRAIN_TIMEOUT": "y"}))
		if err == nil {
			t.Fatal("Load = nil error")
		}
		for _, key := range []string{"POOL_SIZE", "WORKER_FAULT_RATE", "DRAIN_TIMEOUT"} {
			if !strings.Contains(err.Error(), key) {
				t.Errorf("error %q does not name %s", err, key)
			}
		}
	})
}

func TestSlots(t *testing.T) {
	t.Parallel()
	tests := []struct {
		node string
		size int
		want []string
	}{
		{"n", 1, []string{"n-0"}},
		{"node-a", 3, []string{"node-a-0", "node-a-1", "node-a-2"}},
		{"pod-7", 0, []string{}},
	}
	for _, tt := range tests {
		got := Config{NodeID: tt.node, PoolSize: tt.size}.Slots()
		if !slices.Equal(got, tt.want) {
			t.Errorf("Slots(%q, %d) = %v, want %v", tt.node, tt.size, got, tt.want)
		}
	}

	// Many slots: ids are distinct, numbered from 0, and stable across calls.
	cfg := Config{NodeID: "big", PoolSize: 128}
	slots := cfg.Slots()
	seen := map[string]bool{}
	for i, s := range slots {
		if want := "big-" + strconv.Itoa(i); s != want {
			t.Errorf("slot %d = %q, want %q", i, s, want)
		}
		if seen[s] {
			t.Errorf("slot %q listed twice", s)
		}
		seen[s] = true
	}
	if len(slots) != 128 || !slices.Equal(slots, cfg.Slots()) {
		t.Errorf("Slots() is not 128 stable ids: %v", slots)
	}
}
