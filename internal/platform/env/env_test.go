package env

import (
	"strings"
	"testing"
	"time"
)

func TestReader(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"PORT": "8080", "BAD_PORT": "70000", "NAN": "x", "D": "250ms", "BAD_D": "forever",
		"B": "true", "BAD_B": "maybe", "S": "  hello ", "F": "0.5", "BAD_F": "2",
	}
	r := New(func(k string) string { return vars[k] })

	tests := []struct {
		name string
		got  any
		want any
	}{
		{"port", r.Port("PORT", 1), 8080},
		{"port fallback when unset", r.Port("UNSET", 9), 9},
		{"bad port keeps fallback", r.Port("BAD_PORT", 7), 7},
		{"int not a number", r.Int("NAN", 3, 0, 10), 3},
		{"duration", r.Duration("D", time.Second, 0, time.Minute), 250 * time.Millisecond},
		{"bad duration", r.Duration("BAD_D", time.Second, 0, time.Minute), time.Second},
		{"bool", r.Bool("B", false), true},
		{"bad bool", r.Bool("BAD_B", false), false},
		{"string trimmed", r.String("S", ""), "hello"},
		{"string fallback", r.String("UNSET", "fb"), "fb"},
		{"float", r.Float("F", 0, 0, 1), 0.5},
		{"float out of range", r.Float("BAD_F", 0.1, 0, 1), 0.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
	r.Required("MISSING")

	err := r.Err()
	if err == nil {
		t.Fatal("Err() = nil, want every malformed value reported")
	}
	for _, key := range []string{"BAD_PORT", "NAN", "BAD_D", "BAD_B", "BAD_F", "MISSING"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
	for _, key := range []string{"variable PORT=", "variable D=", "variable S="} {
		if strings.Contains(err.Error(), key) {
			t.Errorf("error %q names a good variable (%s)", err, key)
		}
	}
}

func TestReaderNoErrors(t *testing.T) {
	t.Parallel()
	r := New(func(string) string { return "" })
	r.Port("P", 1)
	r.String("S", "")
	if err := r.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}
