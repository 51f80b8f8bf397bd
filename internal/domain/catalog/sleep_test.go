package catalog

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

type sleepResult struct {
	SleptMs *int64 `json:"slept_ms"`
}

// TestSleepResult checks that a sleep lasts at least its duration, reports progress
// (run checks the contract) and says how long it slept. Only lower bounds on time are
// checked: a loaded machine may always be slower.
func TestSleepResult(t *testing.T) {
	t.Parallel()
	for _, ms := range []int64{0, 1, 30, 250} {
		t.Run(fmt.Sprint(ms), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			res := run(t, NameSleep, fmt.Sprintf(`{"ms":%d}`, ms))
			if elapsed := time.Since(start); elapsed < time.Duration(ms)*time.Millisecond {
				t.Errorf("sleep of %dms returned after %s", ms, elapsed)
			}
			if want := fmt.Sprintf(`{"slept_ms":%d}`, ms); string(res.Output) != want {
				t.Errorf("output = %s, want %s", res.Output, want)
			}
			if got := decode[sleepResult](t, res); got.SleptMs == nil || *got.SleptMs != ms {
				t.Errorf("slept_ms = %v, want %d", got.SleptMs, ms)
			}
			if res.Files != nil {
				t.Errorf("sleep returned %d files, want none", len(res.Files))
			}
		})
	}
}

// TestSleepProgress checks that a sleep reports progress while it waits, not only at
// the end.
func TestSleepProgress(t *testing.T) {
	t.Parallel()
	job, _ := prepare(t, NameSleep, `{"ms":300}`)
	var reports []float64
	if _, err := job.Run(t.Context(), func(x float64) { reports = append(reports, x) }); err != nil {
		t.Fatal(err)
	}
	checkProgress(t, reports)
	if len(reports) < 2 || reports[0] <= 0 || reports[0] >= 1 {
		t.Errorf("progress = %v, want reports between 0 and 1 before the final 1", reports)
	}
}

func TestSleepDeterministic(t *testing.T) {
	t.Parallel()
	checkDeterministic(t, NameSleep, `{"ms":20}`)
}

func TestSleepCommonFields(t *testing.T) {
	t.Parallel()
	checkCommonFields(t, NameSleep, `{"ms":5}`, `{"ms":5,"forceFailure":2,"timeLimitMs":100}`,
		Options{ForceFailure: 2, TimeLimit: 100 * time.Millisecond})
	// A sleep longer than its time limit is allowed: that is how hung tasks are tested.
	if _, opts := prepare(t, NameSleep, `{"ms":600000,"timeLimitMs":10}`); opts.TimeLimit != 10*time.Millisecond {
		t.Errorf("time limit = %s, want 10ms", opts.TimeLimit)
	}
}

func TestSleepProblems(t *testing.T) {
	t.Parallel()
	runProblemCases(t, NameSleep, []problemCase{
		{"missing ms", `{}`, "ms", []string{"is required: must be an integer between 0 and 600000"}},
		{"null payload", `null`, "ms", []string{"is required"}},
		{"ms negative", `{"ms":-1}`, "ms", []string{"must be an integer between 0 and 600000, got -1"}},
		{"ms too long", `{"ms":600001}`, "ms", []string{"between 0 and 600000, got 600001"}},
		{"ms string", `{"ms":"100"}`, "ms", []string{`got "100"`}},
		{"ms fraction", `{"ms":0.5}`, "ms", []string{"got 0.5"}},
		{"ms bool", `{"ms":false}`, "ms", []string{"got false"}},
		{"unknown field", `{"ms":1,"seconds":1}`, "seconds", []string{"is not an allowed field; allowed fields are: ms, forceFailure, timeLimitMs"}},
		{"time limit above sleep's", `{"ms":1,"timeLimitMs":60001}`, FieldTimeLimitMs, []string{"between 1 and 60000, got 60001"}},
	})
}

func TestSleepCancel(t *testing.T) {
	t.Parallel()
	t.Run("midway", func(t *testing.T) {
		t.Parallel()
		// Progress comes every 1% (50ms here); a sleep that ignored the cancellation
		// would finish and return no error.
		// A tick may race the cancellation in the sleep's select, so only the error is checked.
		job, _ := prepare(t, NameSleep, `{"ms":5000}`)
		start := time.Now()
		if err := cancelOnFirstProgress(t, job); !errors.Is(err, context.Canceled) {
			t.Errorf("Run cancelled at its first progress report = %v after %s, want context.Canceled", err, time.Since(start))
		}
	})
	t.Run("before start", func(t *testing.T) {
		t.Parallel()
		checkPreCancelled(t, NameSleep, `{"ms":3000}`) // a sleep ignoring ctx would return nil after 3s
	})
}
