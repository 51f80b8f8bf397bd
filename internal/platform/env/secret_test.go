package env

import (
	"fmt"
	"strings"
	"testing"
)

func TestSecretIsNeverPrinted(t *testing.T) {
	t.Parallel()
	type cfg struct {
		Name  string
		Token Secret
	}
	c := cfg{Name: "gw", Token: Secret("s3cr3t-value")}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(verb, c); strings.Contains(out, "s3cr3t") || !strings.Contains(out, "[redacted]") {
			t.Errorf("%s printed %q", verb, out)
		}
	}
	if out := fmt.Sprintf("%+v", cfg{}); strings.Contains(out, "redacted") {
		t.Errorf("an unset secret printed as set: %q", out)
	}
}

func TestSecretMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		secret Secret
		got    string
		want   bool
	}{
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"abc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := tt.secret.Matches(tt.got); got != tt.want {
			t.Errorf("Secret(%q).Matches(%q) = %v, want %v", tt.secret.Reveal(), tt.got, got, tt.want)
		}
	}
}
