package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/recent"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// t0 is the start of a minute: the overview's tests place events relative to it.
var t0 = time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)

// ev is a lifecycle event of task for the overview's tests; slot "" names no worker.
func ev(kind string, id uuid.UUID, attempt int, slot string, at time.Time) events.Event {
	e := events.Event{
		ID: fmt.Sprintf("%s:%s:%d", id, kind, attempt), Version: events.Version, Kind: kind,
		Time: at, TaskID: id, Type: "sleep", Attempt: attempt,
	}
	if node, err := task.SlotNode(slot); err == nil {
		e.Worker = node + "/" + slot
	}
	return e
}

func TestOverviewAggregation(t *testing.T) {
	t.Parallel()
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	tests := []struct {
		name     string
		events   []events.Event
		idle     []string
		now      time.Time
		nodes    []nodeView
		failures failuresView
		perMin   map[int]int // minutes before now's minute → completions; the rest are 0
	}{{
		name: "nothing happened",
		now:  sec(5), nodes: []nodeView{},
	}, {
		name:  "idle slots of two nodes, from the queue",
		idle:  []string{"n2-0", "n1-1", "n1-0"},
		now:   sec(5),
		nodes: []nodeView{{Node: "n1", Idle: 2}, {Node: "n2", Idle: 1}},
	}, {
		name:   "a started attempt makes its slot busy",
		events: []events.Event{ev(events.KindStarted, a, 1, "n1-0", sec(1))},
		idle:   []string{"n1-1"},
		now:    sec(2),
		nodes:  []nodeView{{Node: "n1", Busy: 1, Idle: 1}},
	}, {
		name:   "the queue's idle list wins over a start it has seen the end of",
		events: []events.Event{ev(events.KindStarted, a, 1, "n1-0", sec(1))},
		idle:   []string{"n1-0"},
		now:    sec(2),
		nodes:  []nodeView{{Node: "n1", Idle: 1}},
	}, {
		name: "completion frees the slot and counts in its minute",
		events: []events.Event{
			ev(events.KindStarted, a, 1, "n1-0", sec(-70)), ev(events.KindCompleted, a, 1, "n1-0", sec(-65)),
			ev(events.KindStarted, b, 1, "n1-0", sec(1)), ev(events.KindCompleted, b, 1, "n1-0", sec(2)),
		},
		now: sec(30), nodes: []nodeView{},
		perMin: map[int]int{0: 1, 2: 1},
	}, {
		name: "an event delivered twice counts once",
		events: []events.Event{
			ev(events.KindStarted, a, 2, "n1-0", sec(1)), ev(events.KindStarted, a, 2, "n1-0", sec(1)),
			ev(events.KindCompleted, a, 2, "", sec(2)), ev(events.KindCompleted, a, 2, "", sec(2)),
		},
		now: sec(3), nodes: []nodeView{},
		failures: failuresView{Recovered: 1},
		perMin:   map[int]int{0: 1},
	}, {
		name: "a failed attempt frees its slot; the retry counts as recovered",
		events: []events.Event{
			ev(events.KindStarted, a, 1, "n1-0", sec(1)), ev(events.KindAttemptFailed, a, 1, "n1-0", sec(2)),
			ev(events.KindStarted, a, 2, "n1-1", sec(3)),
		},
		now: sec(4), nodes: []nodeView{{Node: "n1", Busy: 1}},
		failures: failuresView{Recovered: 1, AttemptsFailed: 1},
	}, {
		name: "a late failure of attempt 1 does not stop attempt 2 on the same slot",
		events: []events.Event{
			ev(events.KindStarted, a, 1, "n1-0", sec(1)), ev(events.KindStarted, a, 2, "n1-0", sec(3)),
			ev(events.KindAttemptFailed, a, 1, "n1-0", sec(2)),
		},
		now: sec(4), nodes: []nodeView{{Node: "n1", Busy: 1}},
		failures: failuresView{Recovered: 1, AttemptsFailed: 1},
	}, {
		name: "a task the watchdog moved leaves its dead node's slot",
		events: []events.Event{
			ev(events.KindStarted, a, 1, "n2-0", sec(1)), ev(events.KindStarted, a, 2, "n1-0", sec(5)),
		},
		now: sec(6), nodes: []nodeView{{Node: "n1", Busy: 1}},
		failures: failuresView{Recovered: 1},
	}, {
		name: "a start that arrives after a later start on the same slot is ignored",
		events: []events.Event{
			ev(events.KindStarted, b, 1, "n1-0", sec(5)), ev(events.KindStarted, a, 1, "n1-0", sec(1)),
			ev(events.KindCompleted, b, 1, "", sec(6)),
		},
		now: sec(7), nodes: []nodeView{},
		perMin: map[int]int{0: 1},
	}, {
		name: "a start that arrives after the task is over is ignored",
		events: []events.Event{
			ev(events.KindCompleted, a, 1, "", sec(2)), ev(events.KindStarted, a, 1, "n1-0", sec(1)),
			ev(events.KindFailed, b, 5, "", sec(3)), ev(events.KindStarted, b, 5, "n1-1", sec(1)),
		},
		now: sec(4), nodes: []nodeView{},
		failures: failuresView{Recovered: 1, Failed: 1},
		perMin:   map[int]int{0: 1},
	}, {
		name: "progress, accepted and events without a slot change no slot",
		events: []events.Event{
			ev(events.KindAccepted, a, 0, "", sec(1)), ev(events.KindProgress, a, 1, "n1-0", sec(2)),
			ev(events.KindStarted, c, 1, "", sec(2)),
		},
		now: sec(3), nodes: []nodeView{},
	}, {
		name: "a cancel frees its slot and counts once",
		events: []events.Event{
			ev(events.KindStarted, a, 1, "n1-0", sec(1)), ev(events.KindCancelled, a, 1, "", sec(2)),
			ev(events.KindCancelled, a, 1, "", sec(2)), ev(events.KindCancelled, b, 0, "", sec(2)),
		},
		now: sec(3), nodes: []nodeView{},
		failures: failuresView{Cancelled: 2},
	}, {
		name: "completions older than the window are not shown",
		events: []events.Event{
			ev(events.KindCompleted, a, 1, "", sec(-60*ThroughputMinutes)),
			ev(events.KindCompleted, b, 1, "", sec(-60*(ThroughputMinutes-1))),
			ev(events.KindCompleted, c, 1, "", sec(59)),
		},
		now: sec(59), nodes: []nodeView{},
		perMin: map[int]int{0: 1, ThroughputMinutes - 1: 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := NewOverview(t0)
			for _, e := range tt.events {
				o.Observe(e)
			}
			v := o.view(tt.now, queue.Snapshot{Depth: queue.Depth{High: 1, Normal: 2}, IdleSlots: tt.idle})
			if !reflect.DeepEqual(v.Nodes, tt.nodes) {
				t.Errorf("nodes = %+v, want %+v", v.Nodes, tt.nodes)
			}
			if v.Failures != tt.failures {
				t.Errorf("failures = %+v, want %+v", v.Failures, tt.failures)
			}
			if v.Queue != (queueView{High: 1, Normal: 2}) || !v.Since.Equal(t0) || !v.At.Equal(tt.now) {
				t.Errorf("queue %+v, since %s, at %s; want the snapshot's depth, t0 and now", v.Queue, v.Since, v.At)
			}
			if len(v.Throughput) != ThroughputMinutes {
				t.Fatalf("throughput has %d minutes, want %d", len(v.Throughput), ThroughputMinutes)
			}
			current := tt.now.Truncate(time.Minute)
			for i, m := range v.Throughput {
				ago := ThroughputMinutes - 1 - i
				if want := current.Add(-time.Duration(ago) * time.Minute); !m.Start.Equal(want) {
					t.Errorf("minute %d starts at %s, want %s", i, m.Start, want)
				}
				if m.Completed != tt.perMin[ago] {
					t.Errorf("%d minutes ago: %d completed, want %d", ago, m.Completed, tt.perMin[ago])
				}
			}
		})
	}
}

func TestOverviewPrunesOldMinutes(t *testing.T) {
	t.Parallel()
	o := NewOverview(t0)
	for i := range 100 {
		o.Observe(ev(events.KindCompleted, uuid.New(), 1, "", t0.Add(time.Duration(i)*time.Minute)))
	}
	if len(o.completed) > ThroughputMinutes {
		t.Fatalf("%d minutes of completions kept, want at most %d", len(o.completed), ThroughputMinutes)
	}
}

func TestRecentSetForgetsOldest(t *testing.T) {
	t.Parallel()
	s := newRecentSet[int](3)
	for _, k := range []int{1, 2, 3, 4} {
		if !s.add(k) {
			t.Fatalf("add(%d) = false, want a new key", k)
		}
	}
	if s.add(4) || s.has(1) || !s.has(2) || len(s.set) != 3 {
		t.Fatalf("after 1..4 in a set of 3: has(1)=%v has(2)=%v size %d; want 1 forgotten", s.has(1), s.has(2), len(s.set))
	}
}

func TestSnapshotCache(t *testing.T) {
	t.Parallel()
	var c readCache[queue.Snapshot]
	reads := 0
	read := func(n uint64, err error) func() (queue.Snapshot, error) {
		return func() (queue.Snapshot, error) { reads++; return queue.Snapshot{Depth: queue.Depth{Normal: n}}, err }
	}
	tests := []struct {
		name      string
		at        time.Duration
		read      func() (queue.Snapshot, error)
		want      uint64
		wantErr   bool
		wantReads int
	}{
		{"first read", 0, read(1, nil), 1, false, 1},
		{"reused within the TTL", snapshotTTL - time.Millisecond, read(2, nil), 1, false, 1},
		{"read again after it", snapshotTTL, read(3, nil), 3, false, 2},
		{"a failed read", 3 * snapshotTTL, read(0, errors.New("down")), 0, true, 3},
		{"is reused within the TTL too", 4*snapshotTTL - time.Millisecond, read(4, nil), 0, true, 3},
		{"and read again after it", 4 * snapshotTTL, read(5, nil), 5, false, 4},
	}
	for _, tt := range tests { // in order: each step depends on the one before
		s, err := c.get(t.Context(), t0.Add(tt.at), func(context.Context) (queue.Snapshot, error) { return tt.read() })
		if (err != nil) != tt.wantErr || s.Normal != tt.want || reads != tt.wantReads {
			t.Errorf("%s: got %d, %v after %d reads; want %d, error %v, %d reads", tt.name, s.Normal, err, reads, tt.want, tt.wantErr, tt.wantReads)
		}
	}
}

func TestOverviewEndpoint(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	env.backend.snapshot = queue.Snapshot{Depth: queue.Depth{High: 3, Normal: 7, Idle: 1}, IdleSlots: []string{"vm-1"}}
	env.api.Observe(ev(events.KindStarted, uuid.New(), 2, "vm-0", time.Now()))
	rec := env.serve(httptest.NewRequest(http.MethodGet, "/api/v1/overview", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q; want 200 application/json; body %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var v overviewView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	if v.Queue != (queueView{High: 3, Normal: 7}) || !reflect.DeepEqual(v.Nodes, []nodeView{{Node: "vm", Busy: 1, Idle: 1}}) ||
		v.Failures.Recovered != 1 || len(v.Throughput) != ThroughputMinutes {
		t.Errorf("overview = %s; want the queue's depth, vm with 1 busy and 1 idle, 1 recovered, %d minutes", rec.Body, ThroughputMinutes)
	}

	down := newTestEnv(t, nil)
	down.backend.snapshotErr = fmt.Errorf("%w: queue actor unreachable", ErrUnavailable)
	rec = down.serve(httptest.NewRequest(http.MethodGet, "/api/v1/overview", nil))
	decodeErrorBody(t, rec.Code, rec.Header(), rec.Body.Bytes(), http.StatusServiceUnavailable, "unavailable")
}

// The overview's throughput and failures come from analytics when it answers (the same on
// every gateway), and from this gateway's own counts when it does not.
func TestOverviewFromAnalytics(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	get := func() overviewView {
		t.Helper()
		rec := e.serve(httptest.NewRequest(http.MethodGet, routeOverview, nil))
		var v overviewView
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &v) != nil {
			t.Fatalf("overview = %d %s", rec.Code, rec.Body)
		}
		return v
	}
	if v := get(); v.Source != sourceGateway {
		t.Fatalf("analytics away: source %q, want %q", v.Source, sourceGateway)
	}
	now := time.Now().UTC().Truncate(time.Minute)
	e.backend.mu.Lock()
	e.backend.activity = &recent.Activity{
		Since: now.Add(-recent.Window), At: now,
		Completed: []recent.Minute{{Start: now.Add(-2 * time.Minute), Completed: 7}, {Start: now.Add(-90 * time.Minute), Completed: 99}},
		Recovered: 3, AttemptsFailed: 4, Failed: 1, Cancelled: 2,
	}
	e.backend.mu.Unlock()
	time.Sleep(snapshotTTL) // past the cached failure
	v := get()
	if v.Source != sourceAnalytics || v.Failures != (failuresView{Recovered: 3, AttemptsFailed: 4, Failed: 1, Cancelled: 2}) || !v.Since.Equal(now.Add(-recent.Window)) {
		t.Fatalf("overview %+v: want analytics' counts", v)
	}
	total := 0
	for _, m := range v.Throughput {
		total += m.Completed
		if m.Start.Equal(now.Add(-2*time.Minute)) && m.Completed != 7 {
			t.Errorf("minute %s: %d completed, want 7", m.Start, m.Completed)
		}
	}
	if total != 7 || len(v.Throughput) != ThroughputMinutes {
		t.Fatalf("throughput %+v: want 7 in the minute two ago, %d minutes", v.Throughput, ThroughputMinutes)
	}
}
