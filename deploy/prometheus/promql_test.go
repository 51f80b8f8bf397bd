package prometheus

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite metrics.txt from the rules and the dashboard")

// query is one PromQL expression of the rules or the dashboard, and where it is.
type query struct{ where, expr string }

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record string `yaml:"record"`
			Alert  string `yaml:"alert"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// readRules returns the expressions of rules.yml, the names it records and its alerts.
func readRules(t *testing.T) (qs []query, recorded map[string]bool, alerts []string) {
	t.Helper()
	var f ruleFile
	readYAML(t, "rules.yml", &f)
	recorded = map[string]bool{}
	for _, g := range f.Groups {
		for i, r := range g.Rules {
			name := r.Record + r.Alert
			if name == "" || strings.TrimSpace(r.Expr) == "" {
				t.Fatalf("rules.yml: group %s, rule %d has no name or no expr", g.Name, i)
			}
			qs = append(qs, query{"rules.yml " + name, r.Expr})
			if r.Record != "" {
				recorded[r.Record] = true
			} else {
				alerts = append(alerts, r.Alert)
			}
		}
	}
	return qs, recorded, alerts
}

// readDashboard returns every query of the Grafana dashboard's panels (rows included).
func readDashboard(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	}
	type panel struct {
		Type    string   `json:"type"`
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Title  string  `json:"title"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("grafana-dashboard.json: panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("grafana-dashboard.json: panel %q, query %s is empty", p.Title, tg.RefID)
				}
				qs = append(qs, query{fmt.Sprintf("grafana-dashboard.json panel %q query %s", p.Title, tg.RefID), tg.Expr})
			}
		}
	}
	walk(d.Panels)
	return qs
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestQueriesParse parses every expression of rules.yml and of the Grafana dashboard
// with Prometheus's PromQL parser.
func TestQueriesParse(t *testing.T) {
	rules, _, alerts := readRules(t)
	dash := readDashboard(t)
	if len(rules) < 20 || len(alerts) < 8 || len(dash) < 20 {
		t.Fatalf("found only %d rules (%d alerts) and %d dashboard queries: is a file truncated?", len(rules), len(alerts), len(dash))
	}
	p := parser.NewParser(parser.Options{})
	for _, q := range append(rules, dash...) {
		if _, err := p.ParseExpr(q.expr); err != nil {
			t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
		}
	}
	if !t.Failed() {
		t.Logf("%d rule expressions and %d dashboard queries parse", len(rules), len(dash))
	}
}

// synthetic are the series Prometheus makes itself: no app exposes them.
var synthetic = map[string]bool{"up": true, "ALERTS": true, "ALERTS_FOR_STATE": true}

// TestReferencedMetrics collects every metric name the rules and the dashboard select.
// A recording rule's name (level:metric:operation) must be recorded in rules.yml; every
// other name, except the series Prometheus makes itself, is listed in metrics.txt, which
// internal/e2e (monitoring_test.go) checks against what the running apps and sidecars
// expose. `go test -run TestReferencedMetrics -update` rewrites metrics.txt.
func TestReferencedMetrics(t *testing.T) {
	rules, recorded, _ := readRules(t)
	p := parser.NewParser(parser.Options{})
	exposed := map[string][]string{}
	for _, q := range append(rules, readDashboard(t)...) {
		e, err := p.ParseExpr(q.expr)
		if err != nil {
			t.Fatalf("%s: %v", q.where, err)
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
			switch {
			case name == "":
				t.Errorf("%s: a selector without a metric name: %s", q.where, vs)
			case strings.Contains(name, ":"):
				if !recorded[name] {
					t.Errorf("%s: %s is not recorded by any rule of rules.yml", q.where, name)
				}
			case !synthetic[name]:
				exposed[name] = append(exposed[name], q.where)
			}
			return nil
		})
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range exposed {
			if !yield(n) {
				return
			}
		}
	})
	want := metricsHeader + strings.Join(names, "\n") + "\n"
	if *update {
		if err := os.WriteFile("metrics.txt", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("metrics.txt is not the list of metrics the rules and the dashboard use; run `go test -run TestReferencedMetrics -update` in deploy/prometheus.\nwant:\n%s\ngot:\n%s", want, got)
	}
	if len(names) < 10 {
		t.Errorf("only %d metric names found: %v", len(names), names)
	}
}

const metricsHeader = `# Every metric name that rules.yml and grafana-dashboard.json select, other than their own
# recording rules and Prometheus's own series (up, ALERTS). Generated and checked by
# promql_test.go (go test -run TestReferencedMetrics -update); internal/e2e checks that the
# running apps and sidecars expose each of them (monitoring_test.go).
`
