package bench

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// referenceName is the figure of the reference work (see referenceWork).
const referenceName = "machine: reference work before the run (20,000 events through JSON, one goroutine)"

// referenceRounds is how many events the reference work encodes and decodes.
const referenceRounds = 20000

// referenceWork times a fixed piece of single-threaded work of the kind the stack does
// (a lifecycle event encoded and decoded as JSON, referenceRounds times), taken while the
// stack is idle, right before a run. This shared virtual machine's speed varies by a
// fifth or more from one spell to the next, and every figure of a run moves with it:
// runs whose reference work took different times were taken on a different machine, in
// effect, and their figures compare only with that in mind.
func referenceWork() Measure {
	now := time.Now().UTC()
	ev := task.Event{
		ID: "reference", Version: task.EventVersion, Kind: task.EventCompleted, Time: now, TaskID: uuid.New(),
		Type: "noop", Attempt: 1, Priority: task.PriorityNormal, Worker: "worker-0-0", StartedAt: &now,
		Result: &task.Location{Directory: "bench", Path: "bench/reference.json", Bytes: 2, SHA256: "00"},
	}
	round := func() {
		data, err := json.Marshal(ev)
		if err != nil {
			panic(err) // a fixed value of a fixed type
		}
		var back task.Event
		if err := json.Unmarshal(data, &back); err != nil {
			panic(err)
		}
	}
	for range referenceRounds / 10 { // warm up: code and caches
		round()
	}
	start := time.Now()
	for range referenceRounds {
		round()
	}
	return Measure{Name: referenceName, Unit: "ms", Value: float64(time.Since(start).Microseconds()) / 1000}
}
