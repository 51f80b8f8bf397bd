package prometheus

import (
	"os"
	"strings"
	"testing"
)

type ruleTests struct {
	Tests []struct {
		Name       string `yaml:"name"`
		AlertTests []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertTested checks that rules_test.yml has, for every alert of rules.yml, a
// case where it fires and one where it does not (promtool runs them: TestPromtool), and
// that the README lists every alert.
func TestEveryAlertTested(t *testing.T) {
	_, _, alerts := readRules(t)
	var rt ruleTests
	readYAML(t, "rules_test.yml", &rt)
	firing, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range rt.Tests {
		for _, a := range tc.AlertTests {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if !firing[a] {
			t.Errorf("rules_test.yml: no test where %s fires", a)
		}
		if !silent[a] {
			t.Errorf("rules_test.yml: no test where %s does not fire", a)
		}
		if !strings.Contains(string(readme), a) {
			t.Errorf("README.md does not list the alert %s", a)
		}
	}
}
