package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/task"
)

func TestNewIsDeterministicPerStep(t *testing.T) {
	t.Parallel()
	rec := task.Record{ID: uuid.New(), Type: "primes", Attempts: 2, Priority: task.PriorityHigh}
	a := New(KindStarted, rec, time.Now())
	b := New(KindStarted, rec, time.Now().Add(time.Second))
	if a.ID != b.ID {
		t.Fatalf("same step, different ids: %s %s", a.ID, b.ID)
	}
	rec.Attempts = 3
	if c := New(KindStarted, rec, time.Now()); c.ID == a.ID {
		t.Fatal("another attempt has the same id")
	}
}

func TestTopicForEveryKind(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, k := range []string{KindAccepted, KindStarted, KindProgress, KindAttemptFailed, KindCompleted, KindFailed} {
		topic, err := Topic(k)
		if err != nil || seen[topic] {
			t.Fatalf("Topic(%s) = %q, %v (one topic per kind)", k, topic, err)
		}
		seen[topic] = true
	}
	if len(seen) != len(Topics()) {
		t.Fatalf("%d kinds map to %d topics, want all %d", len(seen), len(seen), len(Topics()))
	}
	if _, err := Topic("exploded"); err == nil {
		t.Fatal("unknown kind has a topic")
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := json.Marshal(New(KindCompleted, task.Record{ID: uuid.New(), Type: "noop", Attempts: 1}, time.Unix(0, 0)))
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
