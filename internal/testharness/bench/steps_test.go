package bench

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/taskgrid/taskgrid/internal/platform/steps"
)

// The time between steps is taken over the tasks that passed every step, from each
// task's first mark of a step.
func TestStepLatencies(t *testing.T) {
	var log strings.Builder
	for task := range 3 { // step i of task k at k*1000 + i*(k+1) ms
		for i, s := range steps.Order {
			fmt.Fprintf(&log, "%s t%d %d\n", s, task, int64(task*1000+i*(task+1))*1e6)
		}
	}
	fmt.Fprintf(&log, "%s t0 %d\n", steps.Pushed, int64(9e9)) // a repeat: the first counts
	fmt.Fprintf(&log, "%s t9 %d\n", steps.Accepted, int64(1)) // a task with one step only
	marks, err := parseSteps(strings.NewReader(log.String()))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range stepLatencies(marks) {
		got[m.Name] = m.Value
	}
	last := len(steps.Order) - 1
	want := map[string]float64{
		stepsName + "tasks that passed every step":                      3,
		stepsName + steps.Accepted + " → " + steps.Pushed + " p50":      2,
		stepsName + steps.Accepted + " → " + steps.Pushed + " p99":      3,
		stepsName + steps.Fed + " → " + steps.Notified + " p50":         2,
		stepsName + steps.Order[0] + " → " + steps.Order[last] + " p50": float64(2 * last),
		stepsName + steps.Order[0] + " → " + steps.Order[last] + " p99": float64(3 * last),
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || math.Abs(g-w) > 1e-9 {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, w)
		}
	}
}

func TestParseStepsRefusesAStrangeLine(t *testing.T) {
	for _, line := range []string{"accepted t0", "accepted t0 soon", "accepted t0 1 2"} {
		if _, err := parseSteps(strings.NewReader(line + "\n")); err == nil {
			t.Errorf("%q: no error", line)
		}
	}
}
