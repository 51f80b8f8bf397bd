package task

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var (
	t0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	w1 = Worker{Node: "vm", Slot: "vm-0"}
)

func accepted(t *testing.T) Record {
	t.Helper()
	rec, ev := Accept(Record{ID: uuid.New(), Type: "noop", Directory: "d", MaxAttempts: 3}, t0)
	if ev.Kind != EventAccepted || ev.ID != rec.ID.String()+":accepted:0" || rec.Status != StatusPending || rec.Priority != PriorityNormal {
		t.Fatalf("Accept = %+v, %+v", rec, ev)
	}
	return rec
}

func kinds(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

// with returns rec after fn changed it (a record in a given state).
func with(rec Record, fn func(*Record)) Record { fn(&rec); return rec }

func TestStart(t *testing.T) {
	t.Parallel()
	base := accepted(t)
	a1 := Assignment{TaskID: base.ID, Attempt: 1, Priority: PriorityNormal, Enqueued: t0, Dispatched: t0.Add(time.Millisecond)}
	tests := []struct {
		name      string
		rec       Record
		a         Assignment
		wantErr   error
		wantState Status
		wantKinds []string
	}{
		{"first attempt: the acceptance again, then the start", base, a1, nil, StatusRunning, []string{EventAccepted, EventStarted}},
		{"a first attempt lost before its start: the next one carries the acceptance", base,
			Assignment{TaskID: base.ID, Attempt: 2, Priority: PriorityHigh}, nil, StatusRunning, []string{EventAccepted, EventStarted}},
		{"re-queued attempt", with(base, func(r *Record) { r.Attempts, r.Priority = 1, PriorityHigh }),
			Assignment{TaskID: base.ID, Attempt: 2, Priority: PriorityHigh}, nil, StatusRunning, []string{EventStarted}},
		{"lost attempt still recorded running: the next one starts", with(base, func(r *Record) { r.Attempts, r.Status = 1, StatusRunning }),
			Assignment{TaskID: base.ID, Attempt: 2, Priority: PriorityHigh}, nil, StatusRunning, []string{EventStarted}},
		{"duplicate dispatch of a started attempt", with(base, func(r *Record) { r.Attempts, r.Status = 1, StatusRunning }), a1, ErrStale, StatusRunning, nil},
		{"older attempt delivered late", with(base, func(r *Record) { r.Attempts, r.Status = 2, StatusRunning }), a1, ErrStale, StatusRunning, nil},
		{"task completed", with(base, func(r *Record) { r.Attempts, r.Status = 1, StatusCompleted }),
			Assignment{TaskID: base.ID, Attempt: 2}, ErrStale, StatusCompleted, nil},
		{"task failed for good", with(base, func(r *Record) { r.Attempts, r.Status = 3, StatusFailed }),
			Assignment{TaskID: base.ID, Attempt: 4}, ErrStale, StatusFailed, nil},
		{"past the last attempt (the last was lost): failed for good", with(base, func(r *Record) { r.Attempts, r.Status = 3, StatusRunning }),
			Assignment{TaskID: base.ID, Attempt: 4, Priority: PriorityHigh}, ErrExhausted, StatusFailed, []string{EventFailed}},
		{"past the last attempt, none ever started: the acceptance, then failed for good", with(base, func(r *Record) { r.MaxAttempts = 3 }),
			Assignment{TaskID: base.ID, Attempt: 4, Priority: PriorityHigh}, ErrExhausted, StatusFailed, []string{EventAccepted, EventFailed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next, evs, err := Start(tt.rec, tt.a, w1, t0.Add(time.Second))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if next.Status != tt.wantState {
				t.Errorf("status = %s, want %s", next.Status, tt.wantState)
			}
			if !slices.Equal(kinds(evs), tt.wantKinds) {
				t.Errorf("events %v, want %v", kinds(evs), tt.wantKinds)
			}
			if err == nil {
				if next.Attempts != tt.a.Attempt || next.Worker != "vm/vm-0" || next.StartedAt == nil || !next.StartedAt.Equal(t0.Add(time.Second)) {
					t.Errorf("started record %+v", next)
				}
				if e := evs[len(evs)-1]; e.Attempt != tt.a.Attempt || e.ID != EventID(base.ID, EventStarted, tt.a.Attempt) || e.StartedAt == nil {
					t.Errorf("started event %+v", e)
				}
			}
			if errors.Is(err, ErrExhausted) && (next.FinishedAt == nil || next.Error == "" || evs[len(evs)-1].Error != next.Error) {
				t.Errorf("exhausted: record %+v, event %+v", next, evs[len(evs)-1])
			}
		})
	}
	t.Run("times of the queue are kept", func(t *testing.T) {
		next, _, err := Start(base, a1, w1, t0.Add(time.Second))
		if err != nil || !next.QueuedAt.Equal(t0) || !next.DispatchedAt.Equal(t0.Add(time.Millisecond)) {
			t.Fatalf("Start = %+v, %v", next, err)
		}
	})
}

func TestFail(t *testing.T) {
	t.Parallel()
	base := accepted(t)
	running := func(attempt int) Record {
		return with(base, func(r *Record) { r.Attempts, r.Status, r.Priority = attempt, StatusRunning, PriorityNormal })
	}
	at := func(n int) Assignment { return Assignment{TaskID: base.ID, Attempt: n} }
	tests := []struct {
		name        string
		rec         Record
		a           Assignment
		wantErr     error
		wantRequeue bool
		wantState   Status
		wantKinds   []string
	}{
		{"attempts left: pending at high priority, silently", running(1), at(1), nil, true, StatusPending, []string{EventAttemptFailed}},
		{"last attempt: failed for good, the user told", running(3), at(3), nil, false, StatusFailed, []string{EventAttemptFailed, EventFailed}},
		{"repeat of the report", with(base, func(r *Record) { r.Attempts, r.Status = 1, StatusPending }), at(1), ErrNoChange, true, StatusPending, nil},
		{"late report of an older attempt", running(2), at(1), ErrStale, false, StatusRunning, nil},
		{"task completed meanwhile", with(base, func(r *Record) { r.Attempts, r.Status = 1, StatusCompleted }), at(1), ErrStale, false, StatusCompleted, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next, evs, requeue, err := Fail(tt.rec, tt.a, "boom", t0)
			if !errors.Is(err, tt.wantErr) || requeue != tt.wantRequeue || next.Status != tt.wantState {
				t.Fatalf("Fail = status %s, requeue %v, err %v; want %s, %v, %v", next.Status, requeue, err, tt.wantState, tt.wantRequeue, tt.wantErr)
			}
			if !slices.Equal(kinds(evs), tt.wantKinds) {
				t.Errorf("events %v, want %v", kinds(evs), tt.wantKinds)
			}
			if tt.wantState == StatusPending && err == nil && next.Priority != PriorityHigh {
				t.Errorf("priority %s, want high", next.Priority)
			}
			if len(evs) > 0 && evs[0].Error != "boom" {
				t.Errorf("attempt_failed error %q, want the reason", evs[0].Error)
			}
		})
	}
	if r := Retry(at(2)); r.Attempt != 3 || r.Priority != PriorityHigh || r.TaskID != base.ID {
		t.Errorf("Retry = %+v", r)
	}
}

func TestComplete(t *testing.T) {
	t.Parallel()
	base := accepted(t)
	loc := Location{Directory: "d", Path: "d/x.json", Bytes: 2, SHA256: "ab"}
	running := with(base, func(r *Record) { r.Attempts, r.Status = 2, StatusRunning })

	done, evs, err := Complete(running, 2, loc, "vm/vm-1", t0)
	if err != nil || done.Status != StatusCompleted || done.Result == nil || done.Result.Path != loc.Path || done.Progress != 1 {
		t.Fatalf("Complete = %+v, %v", done, err)
	}
	if len(evs) != 1 || evs[0].ID != base.ID.String()+":completed" || evs[0].Worker != "vm/vm-1" || evs[0].Result == nil {
		t.Fatalf("completion events %+v", evs)
	}

	// A late result of an earlier attempt, or the same one again: no change, the same
	// completion event to publish again.
	again, evs2, err := Complete(done, 1, Location{Path: "other"}, "vm/vm-0", t0.Add(time.Hour))
	if !errors.Is(err, ErrNoChange) || again.Result.Path != loc.Path || len(evs2) != 1 || evs2[0].ID != evs[0].ID || !evs2[0].Time.Equal(t0) {
		t.Fatalf("repeat Complete = %+v, %+v, %v", again, evs2, err)
	}

	// A result of an attempt later than the record knows (its start was not recorded yet).
	early, _, err := Complete(with(base, func(r *Record) { r.Attempts, r.Status = 1, StatusRunning }), 2, loc, "", t0)
	if err != nil || early.Attempts != 2 {
		t.Fatalf("Complete of a later attempt = %+v, %v", early, err)
	}

	// Failed for good: the result stays on disk only.
	failed := with(base, func(r *Record) { r.Attempts, r.Status = 3, StatusFailed })
	if _, evs, err := Complete(failed, 3, loc, "", t0); !errors.Is(err, ErrStale) || evs != nil {
		t.Fatalf("Complete of a failed task = %v, %v", evs, err)
	}
}

func TestProgressAndIDs(t *testing.T) {
	t.Parallel()
	rec := with(accepted(t), func(r *Record) { r.Attempts, r.Status = 2, StatusRunning })
	p := Progress(rec, 0.4213, t0)
	if p.Kind != EventProgress || p.ID != rec.ID.String()+":progress:2:0.421" || p.Progress != 0.4213 {
		t.Fatalf("Progress = %+v", p)
	}
	if a, b := EventID(rec.ID, EventStarted, 1), EventID(rec.ID, EventStarted, 2); a == b {
		t.Error("started events of two attempts share an id")
	}
	if a, b := EventID(rec.ID, EventCompleted, 1), EventID(rec.ID, EventCompleted, 2); a != b {
		t.Error("completions of two attempts have different ids (a task completes once)")
	}
}

func TestWorkerNames(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in string
		ok bool
	}{{"vm/vm-0", true}, {"a.b/a.b-12", true}, {"vm", false}, {"/vm-0", false}, {"vm/", false}, {"", false}} {
		w, err := ParseWorker(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseWorker(%q) = %+v, %v", tt.in, w, err)
		}
		if tt.ok && w.String() != tt.in {
			t.Errorf("round trip of %q = %q", tt.in, w.String())
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, data string
		ok         bool
	}{
		{"valid", `{"id":"x","version":1,"kind":"started","task_id":"` + uuid.NewString() + `"}`, true},
		{"newer version", `{"id":"x","version":2,"kind":"started","task_id":"` + uuid.NewString() + `"}`, false},
		{"unknown kind", `{"id":"x","version":1,"kind":"exploded","task_id":"` + uuid.NewString() + `"}`, false},
		{"no id", `{"version":1,"kind":"started","task_id":"` + uuid.NewString() + `"}`, false},
		{"no task", `{"id":"x","version":1,"kind":"started"}`, false},
		{"not json", `{`, false},
	} {
		if _, err := DecodeEvent([]byte(tt.data)); (err == nil) != tt.ok {
			t.Errorf("%s: DecodeEvent = %v", tt.name, err)
		}
	}
}

func TestSlotNames(t *testing.T) {
	tests := []struct {
		node string
		i    int
	}{{"worker", 0}, {"worker-1", 3}, {"w", 1023}, {"pod-7-abc.x", 12}}
	for _, tt := range tests {
		slot := SlotName(tt.node, tt.i)
		node, err := SlotNode(slot)
		if err != nil || node != tt.node {
			t.Errorf("SlotNode(%q) = %q, %v; want %q", slot, node, err, tt.node)
		}
		if !ValidNode(tt.node) {
			t.Errorf("ValidNode(%q) = false", tt.node)
		}
	}
	for _, bad := range []string{"", "worker", "-1", "worker-", "worker-x", "worker-99999999"} {
		if node, err := SlotNode(bad); err == nil {
			t.Errorf("SlotNode(%q) = %q, want an error", bad, node)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "a/b", "a b", "ä", strings.Repeat("a", 101)} {
		if ValidNode(bad) {
			t.Errorf("ValidNode(%q) = true", bad)
		}
	}
}

func TestStartAndComplete(t *testing.T) {
	t.Parallel()
	base := accepted(t)
	a1 := Assignment{TaskID: base.ID, Attempt: 1, Priority: PriorityNormal, Enqueued: t0}
	loc := Location{Directory: "d", Path: "d/x.json"}
	tests := []struct {
		name      string
		rec       Record
		a         Assignment
		wantErr   error
		wantState Status
		wantKinds []string
		wantWho   string
	}{
		{"pending: accepted again, started and completed", base, a1, nil, StatusCompleted, []string{EventAccepted, EventStarted, EventCompleted}, "vm/vm-0"},
		{"a later attempt started meanwhile: completed as a late result", with(base, func(r *Record) { r.Attempts, r.Status, r.Worker = 2, StatusRunning, "vm/vm-1" }),
			a1, nil, StatusCompleted, []string{EventCompleted}, "vm/vm-1"},
		{"completed already: the same completion again", with(base, func(r *Record) {
			r.Attempts, r.Status, r.Result, r.FinishedAt = 1, StatusCompleted, &loc, &t0
		}), a1, ErrNoChange, StatusCompleted, []string{EventCompleted}, ""},
		{"failed for good: kept on disk only", with(base, func(r *Record) { r.Attempts, r.Status = 3, StatusFailed }),
			Assignment{TaskID: base.ID, Attempt: 4}, ErrStale, StatusFailed, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, evs, err := StartAndComplete(tt.rec, tt.a, w1, t0.Add(time.Millisecond), loc, t0.Add(time.Second))
			if !errors.Is(err, tt.wantErr) || got.Status != tt.wantState || !slices.Equal(kinds(evs), tt.wantKinds) {
				t.Fatalf("= %s, %v, %v; want %s, %v, %v", got.Status, kinds(evs), err, tt.wantState, tt.wantKinds, tt.wantErr)
			}
			if tt.wantWho != "" && got.Worker != tt.wantWho {
				t.Errorf("worker %q, want %q", got.Worker, tt.wantWho)
			}
			if tt.wantErr == nil && slices.Contains(tt.wantKinds, EventStarted) && (got.StartedAt == nil || !got.StartedAt.Equal(t0.Add(time.Millisecond)) || got.Attempts != 1) {
				t.Errorf("start not recorded: %+v", got)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	base := accepted(t)
	done := t0.Add(time.Minute)
	tests := []struct {
		name      string
		rec       Record
		wantErr   error
		wantState Status
		wantKinds []string // events to publish (the cancellation, or its repeat)
	}{
		{"pending, never started: the acceptance again", base, nil, StatusCancelled, []string{EventAccepted, EventCancelled}},
		{"pending again after a failed attempt", with(base, func(r *Record) { r.Attempts, r.Priority = 1, PriorityHigh }), nil, StatusCancelled, []string{EventCancelled}},
		{"running", with(base, func(r *Record) { r.Attempts, r.Status, r.Worker = 1, StatusRunning, "vm/vm-0" }), nil, StatusCancelled, []string{EventCancelled}},
		{"completed", with(base, func(r *Record) { r.Attempts, r.Status, r.FinishedAt = 1, StatusCompleted, &done }), ErrFinished, StatusCompleted, nil},
		{"failed for good", with(base, func(r *Record) { r.Attempts, r.Status, r.FinishedAt = 3, StatusFailed, &done }), ErrFinished, StatusFailed, nil},
		{"cancelled already: the same event again", with(base, func(r *Record) { r.Attempts, r.Status, r.FinishedAt = 1, StatusCancelled, &done }), ErrFinished, StatusCancelled, []string{EventCancelled}},
		{"cancelled before any start: the same events again", with(base, func(r *Record) { r.Status, r.FinishedAt = StatusCancelled, &done }), ErrFinished, StatusCancelled, []string{EventAccepted, EventCancelled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next, evs, err := Cancel(tt.rec, t0.Add(time.Second))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if next.Status != tt.wantState {
				t.Errorf("status = %s, want %s", next.Status, tt.wantState)
			}
			if !slices.Equal(kinds(evs), tt.wantKinds) {
				t.Fatalf("events %v, want %v", kinds(evs), tt.wantKinds)
			}
			if len(evs) > 0 {
				ev := evs[len(evs)-1]
				if ev.ID != base.ID.String()+":cancelled" || ev.Attempt != tt.rec.Attempts {
					t.Errorf("event %+v", ev)
				}
			}
			if err == nil && (next.FinishedAt == nil || !next.FinishedAt.Equal(t0.Add(time.Second)) || next.Attempts != tt.rec.Attempts) {
				t.Errorf("cancelled record %+v", next)
			}
			if err != nil && !reflectEqual(next, tt.rec) {
				t.Errorf("refused cancel changed the record: %+v", next)
			}
		})
	}
}

func reflectEqual(a, b Record) bool {
	return a.Status == b.Status && a.Attempts == b.Attempts && a.FinishedAt == b.FinishedAt && a.Result == b.Result
}

// TestCancelRacesCompletion: whichever of a cancel and a completion is recorded first
// wins, and the other is refused without an event.
func TestCancelRacesCompletion(t *testing.T) {
	t.Parallel()
	running, _, err := Start(accepted(t), Assignment{TaskID: uuid.Nil, Attempt: 1, Priority: PriorityNormal}, w1, t0)
	if err != nil {
		t.Fatal(err)
	}
	loc := Location{Directory: "d", Path: "d/x.json"}

	cancelled, _, err := Cancel(running, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if next, evs, err := Complete(cancelled, 1, loc, "vm/vm-0", t0.Add(2*time.Second)); !errors.Is(err, ErrStale) || len(evs) != 0 || next.Status != StatusCancelled || next.Result != nil {
		t.Errorf("complete after cancel = %s, %v, %v", next.Status, kinds(evs), err)
	}
	if next, evs, err := StartAndComplete(cancelled, Assignment{TaskID: running.ID, Attempt: 2}, w1, t0, loc, t0.Add(2*time.Second)); !errors.Is(err, ErrStale) || len(evs) != 0 || next.Status != StatusCancelled {
		t.Errorf("start and complete after cancel = %s, %v, %v", next.Status, kinds(evs), err)
	}
	if _, evs, _, err := Fail(cancelled, Assignment{TaskID: running.ID, Attempt: 1}, "boom", t0.Add(2*time.Second)); !errors.Is(err, ErrStale) || len(evs) != 0 {
		t.Errorf("fail after cancel = %v, %v", kinds(evs), err)
	}
	if _, _, err := Start(cancelled, Assignment{TaskID: running.ID, Attempt: 2}, w1, t0.Add(2*time.Second)); !errors.Is(err, ErrStale) {
		t.Errorf("start after cancel = %v", err)
	}

	completed, _, err := Complete(running, 1, loc, "vm/vm-0", t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if next, evs, err := Cancel(completed, t0.Add(2*time.Second)); !errors.Is(err, ErrFinished) || len(evs) != 0 || next.Status != StatusCompleted || next.Result == nil {
		t.Errorf("cancel after completion = %s, %v, %v", next.Status, kinds(evs), err)
	}
}

func TestRecordMayLag(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		a      Assignment
		mayLag bool
	}{
		{"first attempt just queued", Assignment{Attempt: 1, Enqueued: now.Add(-time.Second)}, true},
		{"first attempt at the end of the grace", Assignment{Attempt: 1, Enqueued: now.Add(-RecordGrace)}, false},
		{"first attempt long queued", Assignment{Attempt: 1, Enqueued: now.Add(-time.Hour)}, false},
		{"a later attempt", Assignment{Attempt: 2, Enqueued: now.Add(-time.Second)}, false},
		{"no queue time", Assignment{Attempt: 1}, false},
	}
	for _, tt := range tests {
		if got := tt.a.RecordMayLag(now); got != tt.mayLag {
			t.Errorf("%s: RecordMayLag = %v, want %v", tt.name, got, tt.mayLag)
		}
	}
}

// TestAcceptanceCarried: the accepted event a first step carries again is the one Accept
// made, field for field (so consumers drop it as a repeat), whatever the record became.
func TestAcceptanceCarried(t *testing.T) {
	t.Parallel()
	rec, want := Accept(Record{ID: uuid.New(), Type: "noop", Directory: "d", MaxAttempts: 3}, t0)
	if got := Accepted(rec); got != want {
		t.Fatalf("Accepted = %+v, Accept's %+v", got, want)
	}
	a1 := Assignment{TaskID: rec.ID, Attempt: 1, Priority: PriorityNormal, Enqueued: t0}
	steps := map[string]func() ([]Event, error){
		"start": func() ([]Event, error) { _, evs, err := Start(rec, a1, w1, t0.Add(time.Second)); return evs, err },
		"start and complete": func() ([]Event, error) {
			_, evs, err := StartAndComplete(rec, a1, w1, t0.Add(time.Second), Location{Directory: "d", Path: "d/x.json"}, t0.Add(2*time.Second))
			return evs, err
		},
		"cancel": func() ([]Event, error) { _, evs, err := Cancel(rec, t0.Add(time.Second)); return evs, err },
		"start past the last attempt": func() ([]Event, error) {
			_, evs, err := Start(rec, Assignment{TaskID: rec.ID, Attempt: 4, Priority: PriorityHigh}, w1, t0.Add(time.Second))
			return evs, err
		},
	}
	for name, step := range steps {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			evs, err := step()
			if err != nil && !errors.Is(err, ErrExhausted) {
				t.Fatal(err)
			}
			if len(evs) < 2 || evs[0] != want {
				t.Fatalf("events %v: want the acceptance %+v first", kinds(evs), want)
			}
		})
	}
}

// An assignment carries the spec of a task whose payload is small and kept in its
// record; a large payload, or one stored apart from the record, makes the worker read
// it.
func TestSpecOf(t *testing.T) {
	small := json.RawMessage(`{"n":1}`)
	edge := json.RawMessage(`"` + strings.Repeat("e", SpecMaxPayload-2) + `"`)
	for _, tc := range []struct {
		name string
		rec  Record
		want bool
	}{
		{"small payload", Record{Type: "noop", Payload: small}, true},
		{"at the bound", Record{Type: "noop", Payload: edge}, true},
		{"over the bound", Record{Type: "noop", Payload: append(edge, ' ')}, false},
		{"stored apart", Record{Type: "noop", PayloadKey: "payload-x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := SpecOf(tc.rec)
			if (spec != nil) != tc.want {
				t.Fatalf("SpecOf = %+v, want a spec: %v", spec, tc.want)
			}
			if spec != nil && (spec.Type != tc.rec.Type || string(spec.Payload) != string(tc.rec.Payload)) {
				t.Errorf("spec %+v does not carry the record's type and payload", spec)
			}
		})
	}
}
