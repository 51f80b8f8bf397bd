package main

import (
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
)

// The gateway's timings: each variable's default, a value, off, and what is refused.
func TestLoadTimings(t *testing.T) {
	t.Parallel()
	timings := []struct {
		env string
		def time.Duration
		max string // past the bound
		get func(Config) time.Duration
	}{
		{"SUBMIT_SPACING", SubmitSpacingDefault, "2s", func(c Config) time.Duration { return c.SubmitSpacing }},
		{"ACCEPTED_EVENTS_DELAY", AcceptedDelayDefault, "2m", func(c Config) time.Duration { return c.AcceptedDelay }},
		{"TASK_RETENTION", taskstore.RetentionDefault, "87601h", func(c Config) time.Duration { return c.Retention }},
	}
	for _, tm := range timings {
		tests := []struct {
			name    string
			value   string
			want    time.Duration
			wantErr bool
		}{
			{"default", "", tm.def, false},
			{"set", "3ms", 3 * time.Millisecond, false},
			{"off", "0", 0, false},
			{"negative", "-1ms", 0, true},
			{"too long", tm.max, 0, true},
			{"not a duration", "soon", 0, true},
		}
		for _, tt := range tests {
			t.Run(tm.env+"/"+tt.name, func(t *testing.T) {
				cfg, err := Load(only(tm.env, tt.value))
				if (err != nil) != tt.wantErr {
					t.Fatalf("Load: error %v, want error: %v", err, tt.wantErr)
				}
				if got := tm.get(cfg); !tt.wantErr && got != tt.want {
					t.Fatalf("%s = %v, want %v", tm.env, got, tt.want)
				}
			})
		}
	}
}

// SUBMIT_BODY_BUDGET: its default, a value, and what is refused (less than one body at
// the most a body may be, or not a number).
func TestLoadBodyBudget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value   string
		want    int64
		wantErr bool
	}{
		{"", BodyBudgetDefault, false},
		{"1073741824", 1 << 30, false},
		{"16777216", MaxBodyBytesDefault, false},
		{"16777215", 0, true},
		{"256MiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(only("SUBMIT_BODY_BUDGET", tt.value))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Load: error %v, want error: %v", err, tt.wantErr)
			}
			if !tt.wantErr && cfg.BodyBudget != tt.want {
				t.Errorf("BodyBudget = %d, want %d", cfg.BodyBudget, tt.want)
			}
		})
	}
}

// only is an environment with key set to value and nothing else.
func only(key, value string) func(string) string {
	return func(k string) string {
		if k == key {
			return value
		}
		return ""
	}
}
