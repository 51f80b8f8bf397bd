package events

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// A step's event id is the same each time the step is taken, and another attempt's is not.
func TestEventIDIsDeterministicPerStep(t *testing.T) {
	t.Parallel()
	rec := task.Record{ID: uuid.New(), Type: "primes", Status: task.StatusPending, Attempts: 1, MaxAttempts: 5}
	w := task.Worker{Node: "n", Slot: "s"}
	start := func(attempt int, now time.Time) Event {
		t.Helper()
		_, evs, err := task.Start(rec, task.Assignment{TaskID: rec.ID, Attempt: attempt, Priority: task.PriorityHigh}, w, now)
		if err != nil || len(evs) != 1 || evs[0].Kind != KindStarted {
			t.Fatalf("Start(attempt %d) = %v, %v", attempt, evs, err)
		}
		return evs[0]
	}
	a, b := start(2, time.Now()), start(2, time.Now().Add(time.Second))
	if a.ID != b.ID {
		t.Fatalf("same step, different ids: %s %s", a.ID, b.ID)
	}
	if c := start(3, time.Now()); c.ID == a.ID {
		t.Fatal("another attempt has the same id")
	}
}

func TestTopicForEveryKind(t *testing.T) {
	t.Parallel()
	for _, k := range []string{KindAccepted, KindStarted, KindProgress, KindAttemptFailed, KindCompleted, KindFailed} {
		if topic, err := Topic(k); err != nil || topic != TopicEvents {
			t.Fatalf("Topic(%s) = %q, %v; want %s (one topic for every kind)", k, topic, err, TopicEvents)
		}
	}
	if !slices.Equal(Topics(), []string{TopicEvents}) {
		t.Fatalf("Topics() = %v, want [%s]", Topics(), TopicEvents)
	}
	if _, err := Topic("exploded"); err == nil {
		t.Fatal("unknown kind has a topic")
	}
}

func FuzzDecode(f *testing.F) {
	id := uuid.New()
	good, _ := json.Marshal(Event{
		ID: task.EventID(id, KindCompleted, 1), Version: Version, Kind: KindCompleted, Time: time.Unix(0, 0).UTC(),
		TaskID: id, Type: "noop", Attempt: 1,
	})
	f.Add(good)
	f.Add([]byte(`{"version":2,"kind":"completed","id":"x","task_id":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			return
		}
		// Accepted events round-trip.
		again, _ := json.Marshal(e)
		e2, err := Decode(again)
		if err != nil || e2.ID != e.ID || e2.Kind != e.Kind || e2.TaskID != e.TaskID || !e2.Time.Equal(e.Time) {
			t.Fatalf("round trip: %+v -> %+v, %v", e, e2, err)
		}
	})
}
