package prometheus

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestPromtool runs Prometheus's own checks on the files `make run` loads: the
// configuration, the rules, and the rules' unit tests (rules_test.yml: every alert
// firing and not firing). promtool comes with Debian's prometheus package (make deps);
// with CI=true a missing promtool fails the test, elsewhere it skips it.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool not found (CI=true): `make test-deps` installs Debian's prometheus package: %v", err)
		}
		t.Skipf("promtool not found (run `make deps`): %v", err)
	}
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "rules.yml"},
		{"test", "rules", "rules_test.yml"},
	} {
		t.Run(strings.Join(args[:2], "-"), func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), promtool, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			if !strings.Contains(string(out), "SUCCESS") {
				t.Fatalf("promtool %s did not report SUCCESS:\n%s", strings.Join(args, " "), out)
			}
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		})
	}
}
