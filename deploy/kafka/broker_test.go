package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Addr: "127.0.0.1:9092", DataDir: "/tmp/kafka", Partitions: 4, Topics: []string{"task-accepted", "a.b_c"}}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" means valid
	}{
		{"default", ok, ""},
		{"other 127/8 address", with(func(c *Config) { c.Addr = "127.0.0.2:9092" }), ""},
		{"ipv6 loopback", with(func(c *Config) { c.Addr = "[::1]:9092" }), ""},
		{"localhost", with(func(c *Config) { c.Addr = "localhost:9092" }), ""},
		{"port 0 picks a free port", with(func(c *Config) { c.Addr = "127.0.0.1:0" }), ""},
		{"no topics", with(func(c *Config) { c.Topics = nil }), ""},
		{"test host", with(func(c *Config) { c.Addr = "198.19.7.10:9092" }), ""},
		{"next to the test hosts", with(func(c *Config) { c.Addr = "198.20.0.1:9092" }), "loopback"},
		{"all interfaces", with(func(c *Config) { c.Addr = "0.0.0.0:9092" }), "loopback"},
		{"empty host", with(func(c *Config) { c.Addr = ":9092" }), "loopback"},
		{"private address", with(func(c *Config) { c.Addr = "10.0.0.1:9092" }), "loopback"},
		{"ipv6 any", with(func(c *Config) { c.Addr = "[::]:9092" }), "loopback"},
		{"host name", with(func(c *Config) { c.Addr = "kafka.example.com:9092" }), "loopback"},
		{"no port", with(func(c *Config) { c.Addr = "127.0.0.1" }), "host:port"},
		{"port out of range", with(func(c *Config) { c.Addr = "127.0.0.1:65536" }), "port"},
		{"named port", with(func(c *Config) { c.Addr = "127.0.0.1:kafka" }), "port"},
		{"empty data dir", with(func(c *Config) { c.DataDir = "" }), "-data-dir"},
		{"zero partitions", with(func(c *Config) { c.Partitions = 0 }), "-partitions"},
		{"negative partitions", with(func(c *Config) { c.Partitions = -1 }), "-partitions"},
		{"too many partitions", with(func(c *Config) { c.Partitions = maxPartitions + 1 }), "-partitions"},
		{"bad topic character", with(func(c *Config) { c.Topics = []string{"task accepted"} }), "topic name"},
		{"dot topic", with(func(c *Config) { c.Topics = []string{".."} }), "topic name"},
		{"long topic", with(func(c *Config) { c.Topics = []string{strings.Repeat("t", 250)} }), "topic name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("validate() = nil, want an error mentioning %q", tt.wantErr)
			case tt.wantErr != "" && (!errors.Is(err, errConfig) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("validate() = %v, want errConfig mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	cfg, err := parseConfig(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Addr: "127.0.0.1:9092", SyncWrites: false, Partitions: 1}
	if !equalConfig(cfg, want) {
		t.Errorf("defaults: got %+v, want %+v", cfg, want)
	}

	fromEnv := env(map[string]string{"KAFKA_ADDR": "127.0.0.1:1", "KAFKA_DATA_DIR": "/e", "KAFKA_SYNC_WRITES": "true",
		"KAFKA_TOPICS": " a, b,,a ", "KAFKA_PARTITIONS": "2"})
	cfg, err = parseConfig(nil, fromEnv)
	if err != nil {
		t.Fatal(err)
	}
	want = Config{Addr: "127.0.0.1:1", DataDir: "/e", SyncWrites: true, Topics: []string{"a", "b"}, Partitions: 2}
	if !equalConfig(cfg, want) {
		t.Errorf("env: got %+v, want %+v", cfg, want)
	}

	cfg, err = parseConfig([]string{"-addr", "[::1]:2", "-data-dir", "/f", "-sync-writes=true", "-topics", "c",
		"-partitions", "3", "-ready-file", "/r"}, fromEnv)
	if err != nil {
		t.Fatal(err)
	}
	want = Config{Addr: "[::1]:2", DataDir: "/f", SyncWrites: true, Topics: []string{"c"}, Partitions: 3, ReadyFile: "/r"}
	if !equalConfig(cfg, want) {
		t.Errorf("flags over env: got %+v, want %+v", cfg, want)
	}

	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"bad KAFKA_SYNC_WRITES": {nil, map[string]string{"KAFKA_SYNC_WRITES": "yes please"}},
		"bad KAFKA_PARTITIONS":  {nil, map[string]string{"KAFKA_PARTITIONS": "four"}},
		"unknown flag":          {[]string{"-port", "1"}, nil},
		"stray argument":        {[]string{"serve"}, nil},
	} {
		if _, err := parseConfig(tc.args, env(tc.env)); !errors.Is(err, errConfig) {
			t.Errorf("%s: parseConfig error = %v, want errConfig", name, err)
		}
	}
}

func equalConfig(a, b Config) bool {
	return a.Addr == b.Addr && a.DataDir == b.DataDir && a.SyncWrites == b.SyncWrites &&
		slices.Equal(a.Topics, b.Topics) && a.Partitions == b.Partitions && a.ReadyFile == b.ReadyFile
}
