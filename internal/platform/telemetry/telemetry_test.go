package telemetry

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestNewLogger(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level     string
		wantErr   bool
		debugSeen bool
	}{
		{"info", false, false},
		{"debug", false, true},
		{"WARN", false, false},
		{"verbose", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			l, err := NewLogger(&buf, tt.level)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewLogger(%q) error = %v, wantErr %v", tt.level, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			l.Debug("d", "task_id", "x")
			if got := buf.Len() > 0; got != tt.debugSeen {
				t.Fatalf("debug line written = %v, want %v", got, tt.debugSeen)
			}
			if tt.debugSeen {
				var m map[string]any
				if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["task_id"] != "x" {
					t.Fatalf("log line %q is not JSON with task_id: %v", buf.String(), err)
				}
			}
		})
	}
}

func TestNewRegistry(t *testing.T) {
	t.Parallel()
	mfs, err := NewRegistry("gateway").Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"taskgrid_app_info", "go_goroutines", "process_resident_memory_bytes"} {
		if !names[want] {
			t.Errorf("registry lacks %s", want)
		}
	}
}
