package main

import (
	"testing"
	"time"
)

func TestLoadSubmitSpacing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		value   string
		want    time.Duration
		wantErr bool
	}{
		{"default", "", SubmitSpacingDefault, false},
		{"set", "3ms", 3 * time.Millisecond, false},
		{"off", "0", 0, false},
		{"negative", "-1ms", 0, true},
		{"too long", "2s", 0, true},
		{"not a duration", "soon", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(func(k string) string {
				if k == "SUBMIT_SPACING" {
					return tt.value
				}
				return ""
			})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Load: error %v, want error: %v", err, tt.wantErr)
			}
			if !tt.wantErr && cfg.SubmitSpacing != tt.want {
				t.Fatalf("SubmitSpacing = %v, want %v", cfg.SubmitSpacing, tt.want)
			}
		})
	}
}
