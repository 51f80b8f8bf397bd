package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/taskgrid/taskgrid/internal/platform/steps"
)

// resetSteps empties the step log (-steps), if there is one, before a run: the run's
// figures are of its own tasks.
func resetSteps(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Truncate(path, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("empty the step log: %w", err)
	}
	return nil
}

// stepMeasures reads the step log (-steps), if there is one, and reports where the
// tasks' time went (stepLatencies).
func stepMeasures(path string) ([]Measure, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the step log: %w", err)
	}
	defer f.Close()
	marks, err := parseSteps(f)
	if err != nil {
		return nil, fmt.Errorf("read the step log %s: %w", path, err)
	}
	return stepLatencies(marks), nil
}

// stepMarks is when each task (by id) passed each step (by name), the first time.
type stepMarks map[string]map[string]int64

// parseSteps reads lines "<step> <task id> <unix nanoseconds>" (package steps).
func parseSteps(r io.Reader) (stepMarks, error) {
	marks := stepMarks{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return nil, fmt.Errorf("line %q: want <step> <task id> <time>", sc.Text())
		}
		at, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		t := marks[f[1]]
		if t == nil {
			t = map[string]int64{}
			marks[f[1]] = t
		}
		if _, ok := t[f[0]]; !ok {
			t[f[0]] = at
		}
	}
	return marks, sc.Err()
}

// stepsName prefixes the figures of a task's way by step.
const stepsName = "step: "

// stepLatencies reports, over the tasks that passed every step of steps.Order (a task
// that failed an attempt, or whose start went apart from its result, takes another
// way), the time from each step to the next and from the first to the last, at p50 and
// p99, and how many tasks that was.
func stepLatencies(marks stepMarks) []Measure {
	var whole [][]int64
	for _, t := range marks {
		ts := make([]int64, len(steps.Order))
		ok := true
		for i, s := range steps.Order {
			ts[i], ok = t[s]
			if !ok {
				break
			}
		}
		if ok {
			whole = append(whole, ts)
		}
	}
	ms := []Measure{{Name: stepsName + "tasks that passed every step", Unit: "tasks", Value: float64(len(whole))}}
	if len(whole) == 0 {
		return ms
	}
	between := func(i, j int) []time.Duration {
		ds := make([]time.Duration, len(whole))
		for k, ts := range whole {
			ds[k] = time.Duration(ts[j] - ts[i])
		}
		return ds
	}
	last := len(steps.Order) - 1
	for i := range last {
		ms = append(ms, latencies(stepsName+steps.Order[i]+" → "+steps.Order[i+1], between(i, i+1), false)...)
	}
	return append(ms, latencies(stepsName+steps.Order[0]+" → "+steps.Order[last], between(0, last), false)...)
}
