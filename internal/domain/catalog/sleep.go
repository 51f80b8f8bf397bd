package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// sleepTickMin is the shortest interval between progress reports of a sleep.
const sleepTickMin = 10 * time.Millisecond

type sleepType struct{}

// Sleep waits, honoring cancellation. A sleep longer than its time limit is how the
// system tests tasks that hang.
func Sleep() Type { return sleepType{} }

func (sleepType) Spec() Spec {
	return Spec{
		Name: NameSleep,
		Description: fmt.Sprintf("Sleeps for ms milliseconds, honoring cancellation. Sleeps longer than the "+
			"time limit (%s) time out, which tests hung tasks.", SleepTimeLimit),
		Fields:    sleepFields(),
		Example:   json.RawMessage(`{"ms":1000}`),
		TimeLimit: SleepTimeLimit,
	}
}

func sleepFields() []Field {
	return []Field{{
		Name: "ms", Type: TypeInteger, Required: true, Min: bound(0), Max: bound(SleepMsMax),
		Description: "How long to sleep, in milliseconds.",
	}}
}

func (sleepType) Prepare(payload json.RawMessage) (Job, error) {
	var p problems
	v := decodeObject("", payload, sleepFields(), &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return &sleepJob{ms: v.int("ms")}, nil
}

type sleepJob struct{ ms int64 }

type sleepOutput struct {
	SleptMs int64 `json:"slept_ms"` // as asked, so that the output is deterministic
}

func (j *sleepJob) Run(ctx context.Context, progress ProgressFunc) (Result, error) {
	pr := newProgress(progress)
	d := time.Duration(j.ms) * time.Millisecond
	start := time.Now()
	done := time.NewTimer(d)
	defer done.Stop()
	tick := time.NewTicker(max(d/100, sleepTickMin))
	defer tick.Stop()
	for waiting := d > 0; waiting; {
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-tick.C:
			pr.set(float64(time.Since(start)) / float64(d))
		case <-done.C:
			waiting = false
		}
	}
	data, err := json.Marshal(sleepOutput{SleptMs: j.ms})
	if err != nil {
		return Result{}, fmt.Errorf("encode sleep output: %w", err)
	}
	pr.finish()
	return Result{Output: data}, nil
}
