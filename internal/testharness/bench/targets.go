package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// The sizes the targets are set for (README, "Benchmarks"): a run of other sizes (-quick,
// or flags) gets no verdict, since its figures are not the targets' figures.
var targetConfig = DefaultConfig()

// depthTolerance is how much dearer the queue may be at DepthLarge waiting than at
// DepthSmall and still cost "the same": the figures of one depth move about this much
// between runs on this machine.
const depthTolerance = 1.5

// A target is one figure the benchmark is held to, and how it is read off the report.
type target struct {
	scenario string
	name     string // the target as printed
	want     string
	// sized says whether the run had the sizes the target is set for.
	sized func(c Config) bool
	// value returns the figure (ok false: not measured) and whether it meets the target.
	value func(r *Report) (v float64, unit string, ok, met bool)
}

// targets are the benchmark's targets (README, "Benchmarks").
var targets = []target{
	{"burst", "throughput", "≥ 1,000 tasks/s", burstSized, atLeast("burst", "throughput", 1000)},
	{"burst", "CPU per task, all processes of the stack", "≤ 2 ms", burstSized, atMost("burst", cpuTotalName, 2)},
	{"paced", "sustained", "yes", pacedSized, atLeast("paced", "sustained", 1)},
	{"paced", "submit→notified p99", "≤ 100 ms", pacedSized, atMost("paced", "submit→notified p99", 100)},
	{"paced-light", "submit→notified p50", "≤ 10 ms", lightSized, atMost("paced-light", "submit→notified p50", 10)},
	{"paced-light", "submit→notified p99", "≤ 50 ms", lightSized, atMost("paced-light", "submit→notified p99", 50)},
	{"recovery-app", "kill→running elsewhere max", "≤ 3 s", enoughRuns, atMost("recovery-app", "kill→running elsewhere max", 3)},
	{"recovery-sidecar", "kill→running elsewhere max", "≤ 3 s", enoughRuns, atMost("recovery-sidecar", "kill→running elsewhere max", 3)},
	{"depth", "enqueue p50, large over small depth", fmt.Sprintf("≤ %.1f×", depthTolerance), depthSized, depthRatio("enqueue p50", false)},
	{"depth", "dequeues a second, small over large depth", fmt.Sprintf("≤ %.1f×", depthTolerance), depthSized, depthRatio("dequeue to", true)},
}

func enoughRuns(c Config) bool { return c.Runs >= targetConfig.Runs }

func burstSized(c Config) bool {
	return enoughRuns(c) && c.BurstTasks == targetConfig.BurstTasks && c.BurstClients == targetConfig.BurstClients && c.WorkersPerNode == targetConfig.WorkersPerNode
}

func pacedSized(c Config) bool {
	return enoughRuns(c) && c.PacedRate == targetConfig.PacedRate && c.PacedDuration >= targetConfig.PacedDuration
}

func lightSized(c Config) bool {
	return enoughRuns(c) && c.PacedLightRate == targetConfig.PacedLightRate && c.PacedDuration >= targetConfig.PacedDuration
}

func depthSized(c Config) bool {
	return enoughRuns(c) && c.DepthSmall <= targetConfig.DepthSmall && c.DepthLarge >= targetConfig.DepthLarge
}

// measured is the first figure of figs of scenario whose name is named, among those
// measured (with runs), if there is one.
func measured(figs []Figure, scenario string, named func(name string) bool) (Figure, bool) {
	i := slices.IndexFunc(figs, func(f Figure) bool { return f.Scenario == scenario && named(f.Name) && len(f.Runs) > 0 })
	if i < 0 {
		return Figure{}, false
	}
	return figs[i], true
}

// is matches the name name.
func is(name string) func(string) bool { return func(n string) bool { return n == name } }

// figure is the report's figure of scenario named name, if it was measured.
func (r *Report) figure(scenario, name string) (Figure, bool) {
	return measured(r.Figures, scenario, is(name))
}

func atLeast(scenario, name string, want float64) func(r *Report) (float64, string, bool, bool) {
	return func(r *Report) (float64, string, bool, bool) {
		f, ok := r.figure(scenario, name)
		return f.Median, f.Unit, ok, ok && f.Median >= want
	}
}

func atMost(scenario, name string, want float64) func(r *Report) (float64, string, bool, bool) {
	return func(r *Report) (float64, string, bool, bool) {
		f, ok := r.figure(scenario, name)
		return f.Median, f.Unit, ok, ok && f.Median <= want
	}
}

// depthRatio is the depth scenario's figure whose name (after "<n> waiting: ") starts
// with prefix, at the large depth over the small one (inverted: small over large, for a
// rate, where less is dearer).
func depthRatio(prefix string, inverted bool) func(r *Report) (float64, string, bool, bool) {
	return func(r *Report) (float64, string, bool, bool) {
		find := func(depth int) (Figure, bool) {
			label := fmt.Sprintf("%d waiting: %s", depth, prefix)
			return measured(r.Figures, "depth", func(n string) bool { return strings.HasPrefix(n, label) })
		}
		small, ok1 := find(r.Config.DepthSmall)
		large, ok2 := find(r.Config.DepthLarge)
		if !ok1 || !ok2 || small.Median <= 0 || large.Median <= 0 {
			return 0, "", false, false
		}
		v := large.Median / small.Median
		if inverted {
			v = small.Median / large.Median
		}
		return v, "×", true, v <= depthTolerance
	}
}

// targetRow is a target as printed: its run's median and the verdict.
type targetRow struct{ scenario, name, want, got, verdict string }

// Verdicts of a target.
const (
	verdictMet     = "met"
	verdictNotMet  = "NOT MET"
	verdictNotRun  = "not run"
	verdictNoSizes = "no verdict: not the target's sizes"
)

// targetRows reads every target off the report: met, not met, not run, or no verdict for
// a run of other sizes than the target's.
func (r *Report) targetRows() []targetRow {
	rows := make([]targetRow, 0, len(targets))
	for _, t := range targets {
		v, unit, ok, met := t.value(r)
		row := targetRow{scenario: t.scenario, name: t.name, want: t.want, got: strings.TrimSpace(num(v) + " " + strings.TrimPrefix(unit, "×"))}
		if unit == "1 = yes" { // sustained: a yes or no, whose median of runs is a majority
			row.got = map[bool]string{true: "yes", false: "no"}[v >= 0.5]
		}
		switch {
		case !ok:
			row.got, row.verdict = "-", verdictNotRun
		case !t.sized(r.Config):
			row.verdict = verdictNoSizes
		case met:
			row.verdict = verdictMet
		default:
			row.verdict = verdictNotMet
		}
		rows = append(rows, row)
	}
	return rows
}

// overRuns summarizes the runs of every scenario's figure called name.
func (r *Report) overRuns(name string) (Figure, bool) {
	var runs []float64
	for _, f := range r.Figures {
		if f.Name == name {
			runs = append(runs, f.Runs...)
		}
	}
	if len(runs) == 0 {
		return Figure{}, false
	}
	return Summarize("", "", "", runs), true
}

// writeTargets prints the targets (targetRows), and beside them the machine's reference
// work (this machine's speed moves every figure: README, "Reading them") and River's
// throughput in the same run, when it ran.
func (r *Report) writeTargets(w io.Writer) error {
	fmt.Fprintln(w, "\nTargets (README, \"Benchmarks\"): medians of the runs, against the target")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\twant\tmedian\tverdict\t")
	for _, row := range r.targetRows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", row.scenario, row.name, row.want, row.got, row.verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ref, ok := r.overRuns(referenceName); ok {
		fmt.Fprintf(w, "machine: reference work %s ms (%s–%s) over the runs; 92–104 ms in a spell of this machine's usual speed\n", num(ref.Median), num(ref.Min), num(ref.Max))
	}
	sc, okSC := r.overRuns(syscallName)
	pf, okPF := r.overRuns(pageFaultName)
	if okSC && okPF {
		fmt.Fprintf(w, "machine: a system call %s µs (%s–%s), a page fault %s µs (%s–%s) over the runs\n", num(sc.Median), num(sc.Min), num(sc.Max), num(pf.Median), num(pf.Min), num(pf.Max))
	}
	if f, ok := r.figure("peer-river", "throughput"); ok {
		fmt.Fprintf(w, "River in the same run: %s jobs/s (the targets were set where it did 1,493)\n", num(f.Median))
	}
	return nil
}
