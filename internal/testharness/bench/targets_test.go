package bench

import (
	"bytes"
	"strings"
	"testing"
)

// verdicts returns the verdict of each target, by "scenario target".
func verdicts(rep *Report) map[string]string {
	got := map[string]string{}
	for _, row := range rep.targetRows() {
		got[row.scenario+" "+row.name] = row.verdict
	}
	return got
}

func TestTargets(t *testing.T) {
	three := func(v float64) []float64 { return []float64{v, v, v} }
	full := []Figure{
		Summarize("burst", "throughput", "tasks/s", []float64{1010, 990, 1200}), // median 1,010: met
		Summarize("burst", cpuTotalName, "ms", []float64{2.1, 1.9, 2.3}),        // median 2.1: not met
		Summarize("paced", "sustained", "1 = yes", []float64{1, 1, 0}),
		Summarize("paced", "submit→notified p99", "ms", three(100)), // on the target: met
		Summarize("paced-light", "submit→notified p50", "ms", three(10.4)),
		Summarize("paced-light", "submit→notified p99", "ms", three(19)),
		Summarize("recovery-app", "kill→running elsewhere max", "s", three(2.01)),
		Summarize("depth", "1000 waiting: enqueue p50", "ms", three(1.0)),
		Summarize("depth", "1000000 waiting: enqueue p50", "ms", three(1.4)),
		Summarize("depth", "1000 waiting: dequeue to 8 slots", "tasks/s", three(2000)),
		Summarize("depth", "1000000 waiting: dequeue to 8 slots", "tasks/s", three(1000)), // half the rate: dearer
		Summarize("paced", referenceName, "ms", []float64{150, 160, 170}),
		Summarize("burst", syscallName, "µs", []float64{1.1, 0.9, 1.0}),
		Summarize("paced", syscallName, "µs", []float64{1.2, 1.3, 0.8}), // with the burst's: 0.8–1.3, median 1.05
		Summarize("paced", pageFaultName, "µs", []float64{10.5, 10, 11}),
	}
	cases := []struct {
		name   string
		config Config
		want   map[string]string
	}{
		{"the targets' sizes", DefaultConfig(), map[string]string{
			"burst throughput": verdictMet,
			"burst CPU per task, all processes of the stack": verdictNotMet,
			"paced sustained":                                 verdictMet,
			"paced submit→notified p99":                       verdictMet,
			"paced-light submit→notified p50":                 verdictNotMet,
			"paced-light submit→notified p99":                 verdictMet,
			"recovery-app kill→running elsewhere max":         verdictMet,
			"recovery-sidecar kill→running elsewhere max":     verdictNotRun,
			"depth enqueue p50, large over small depth":       verdictMet,
			"depth dequeues a second, small over large depth": verdictNotMet,
		}},
		{"quick sizes", QuickConfig(), map[string]string{
			"burst throughput":                            verdictNoSizes,
			"paced submit→notified p99":                   verdictNoSizes,
			"paced-light submit→notified p50":             verdictNoSizes,
			"recovery-app kill→running elsewhere max":     verdictMet, // the same scenario at any size, three runs
			"recovery-sidecar kill→running elsewhere max": verdictNotRun,
			"depth enqueue p50, large over small depth":   verdictNotRun, // no figures at 20,000 waiting
		}},
		{"one run", func() Config { c := DefaultConfig(); c.Runs = 1; return c }(), map[string]string{
			"burst throughput":                        verdictNoSizes,
			"paced-light submit→notified p50":         verdictNoSizes,
			"recovery-app kill→running elsewhere max": verdictNoSizes,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := verdicts(&Report{Config: tc.config, Figures: full})
			for target, want := range tc.want {
				if got[target] != want {
					t.Errorf("%s: %q, want %q", target, got[target], want)
				}
			}
		})
	}

	var b bytes.Buffer
	rep := &Report{Config: DefaultConfig(), Figures: append(full, Summarize("peer-river", "throughput", "jobs/s", three(988)))}
	if err := rep.writeTargets(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"reference work 160 ms (150–170)", "a system call 1.05 µs (0.800–1.30), a page fault 10.5 µs (10.0–11.0)", "River in the same run: 988 jobs/s", "1010 tasks/s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("targets lack %q:\n%s", want, b.String())
		}
	}
}
