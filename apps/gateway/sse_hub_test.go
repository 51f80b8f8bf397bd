package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

func newTestHub(t *testing.T) *SSEHub {
	t.Helper()
	h := NewSSEHub(slog.New(slog.DiscardHandler))
	t.Cleanup(h.Close)
	return h
}

// progressUpdate returns a progress update of task id.
func progressUpdate(id uuid.UUID, p float64) Update {
	return Update{TaskID: id, Kind: UpdateProgress, Patch: viewPatch{Progress: &p}}
}

// upd returns an update of kind that records seq (as its attempts).
func upd(id uuid.UUID, kind string, seq int) Update {
	return Update{TaskID: id, Kind: kind, Patch: viewPatch{Attempts: &seq}}
}

func seqOf(t *testing.T, u Update) int {
	t.Helper()
	if u.Patch.Attempts == nil {
		t.Fatalf("update %s %+v has no seq", u.Kind, u.Patch)
	}
	return *u.Patch.Attempts
}

// receive takes one update from ch, failing after a timeout or if ch is closed.
func receive(t *testing.T, ch <-chan Update) Update {
	t.Helper()
	select {
	case u, ok := <-ch:
		if !ok {
			t.Fatal("channel closed, want an update")
		}
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for an update")
		return Update{}
	}
}

// expectNothing checks that ch delivers nothing for a short while.
func expectNothing(t *testing.T, ch <-chan Update) {
	t.Helper()
	select {
	case u, ok := <-ch:
		t.Errorf("got %+v (open %v), want nothing", u, ok)
	case <-time.After(50 * time.Millisecond):
	}
}

// expectClosed checks that ch is closed (after draining nothing).
func expectClosed(t *testing.T, ch <-chan Update) {
	t.Helper()
	select {
	case u, ok := <-ch:
		if ok {
			t.Errorf("got %+v, want a closed channel", u)
		}
	case <-time.After(5 * time.Second):
		t.Error("channel not closed")
	}
}

func TestHubDeliversInOrderToEachSubscriber(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	id, other := uuid.New(), uuid.New()
	a, cancelA := h.Subscribe(id)
	defer cancelA()
	b, cancelB := h.Subscribe(id)
	defer cancelB()
	o, cancelO := h.Subscribe(other)
	defer cancelO()
	if n := h.Clients(); n != 3 {
		t.Fatalf("Clients = %d, want 3", n)
	}

	kinds := []string{UpdateStatus, UpdateProgress, UpdateProgress, UpdateStatus, UpdateCompleted}
	for i, k := range kinds {
		h.Publish(upd(id, k, i))
	}
	for name, ch := range map[string]<-chan Update{"a": a, "b": b} {
		for i, k := range kinds {
			u := receive(t, ch)
			if u.TaskID != id || u.Kind != k || seqOf(t, u) != i {
				t.Errorf("subscriber %s: update %d = %s %+v, want %s seq %d", name, i, u.Kind, u.Patch, k, i)
			}
		}
	}
	expectNothing(t, o)
}

func TestHubIgnoresInvalidUpdates(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	id := uuid.New()
	ch, cancel := h.Subscribe(id)
	defer cancel()
	h.Publish(Update{TaskID: id, Kind: "bogus"})
	h.Publish(Update{TaskID: id, Kind: ""})
	h.Publish(Update{TaskID: uuid.Nil, Kind: UpdateProgress})
	h.Publish(upd(id, UpdateProgress, 7))
	if u := receive(t, ch); u.Kind != UpdateProgress || seqOf(t, u) != 7 {
		t.Errorf("first update %+v, want the valid progress update (seq 7)", u)
	}
	expectNothing(t, ch)
}

func TestHubCancel(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	id := uuid.New()
	ch1, cancel1 := h.Subscribe(id)
	ch2, cancel2 := h.Subscribe(id)
	defer cancel2()
	h.Publish(upd(id, UpdateProgress, 1)) // queued for ch1, never read
	cancel1()
	cancel1() // twice is fine
	if n := h.Clients(); n != 1 {
		t.Errorf("Clients after one cancel (twice) = %d, want 1", n)
	}
	// Queued updates are discarded; the channel is closed.
	for u := range ch1 {
		if u.Kind != UpdateProgress {
			t.Errorf("cancelled channel delivered %+v", u)
		}
	}
	h.Publish(upd(id, UpdateProgress, 2))
	if u := receive(t, ch2); seqOf(t, u) != 1 {
		t.Errorf("other subscriber got seq %d, want 1", seqOf(t, u))
	}
	if u := receive(t, ch2); seqOf(t, u) != 2 {
		t.Errorf("other subscriber got seq %d, want 2", seqOf(t, u))
	}
	cancel2()
	expectClosed(t, ch2)
	if n := h.Clients(); n != 0 {
		t.Errorf("Clients after every cancel = %d, want 0", n)
	}
	// The task's entry is gone: a new subscription still works.
	ch3, cancel3 := h.Subscribe(id)
	defer cancel3()
	h.Publish(upd(id, UpdateStatus, 3))
	if u := receive(t, ch3); seqOf(t, u) != 3 {
		t.Errorf("new subscriber got seq %d, want 3", seqOf(t, u))
	}
}

func TestHubClose(t *testing.T) {
	t.Parallel()
	h := NewSSEHub(slog.New(slog.DiscardHandler))
	id := uuid.New()
	ch1, cancel1 := h.Subscribe(id)
	ch2, cancel2 := h.Subscribe(uuid.New())
	h.Publish(upd(id, UpdateProgress, 1))
	h.Close()
	if n := h.Clients(); n != 0 {
		t.Errorf("Clients after Close = %d, want 0", n)
	}
	for _, ch := range []<-chan Update{ch1, ch2} {
		for range ch { // queued updates may or may not arrive; the channel must close
		}
	}
	cancel1() // after Close: no panic, no block
	cancel2()

	ch3, cancel3 := h.Subscribe(id)
	expectClosed(t, ch3)
	cancel3()
	h.Publish(upd(id, UpdateProgress, 2)) // no subscriber, no panic
	if n := h.Clients(); n != 0 {
		t.Errorf("Clients after subscribing to a closed hub = %d, want 0", n)
	}
	h.Close() // twice is fine
}

// TestHubConcurrent publishes, subscribes, reads and cancels at once; run with -race.
// Each subscriber checks that every publisher's updates arrive in publish order.
func TestHubConcurrent(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	const (
		publishers  = 4
		perPub      = 300
		subscribers = 24
	)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for p := range publishers {
		wg.Go(func() {
			<-start
			for i := range perPub {
				kind := UpdateProgress
				if i%10 == 0 {
					kind = UpdateStatus
				}
				// The publisher in Worker, its sequence in Attempts.
				h.Publish(Update{TaskID: ids[(p+i)%len(ids)], Kind: kind, Patch: viewPatch{Worker: strconv.Itoa(p), Attempts: &i}})
			}
		})
	}
	errs := make(chan error, subscribers)
	for s := range subscribers {
		wg.Go(func() {
			<-start
			ch, cancel := h.Subscribe(ids[s%len(ids)])
			defer cancel()
			last := map[int]int{}
			for n := 0; n < 20+s*5; n++ {
				select {
				case u, ok := <-ch:
					if !ok {
						errs <- fmt.Errorf("subscriber %d: channel closed before cancel", s)
						return
					}
					pub, err := strconv.Atoi(u.Patch.Worker)
					if err != nil || u.Patch.Attempts == nil {
						errs <- fmt.Errorf("subscriber %d: update %+v without its publisher and sequence", s, u.Patch)
						return
					}
					seq := *u.Patch.Attempts
					if prev, ok := last[pub]; ok && seq <= prev {
						errs <- fmt.Errorf("subscriber %d: publisher %d's seq %d after %d", s, pub, seq, prev)
						return
					}
					last[pub] = seq
				case <-time.After(200 * time.Millisecond): // the publishers are done
					return
				}
			}
			if s%3 == 0 {
				cancel() // cancel concurrently with a deferred second cancel
			}
		})
	}
	// Clients is read concurrently too.
	wg.Go(func() {
		<-start
		for range 100 {
			if n := h.Clients(); n < 0 || n > subscribers {
				errs <- fmt.Errorf("Clients = %d, want 0..%d", n, subscribers)
				return
			}
		}
	})
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := h.Clients(); n != 0 {
		t.Errorf("Clients after every cancel = %d, want 0", n)
	}
}

// TestHubCloseConcurrentWithCancel closes the hub while subscriptions are cancelled.
func TestHubCloseConcurrentWithCancel(t *testing.T) {
	t.Parallel()
	for range 20 {
		h := NewSSEHub(slog.New(slog.DiscardHandler))
		id := uuid.New()
		var cancels []func()
		for range 10 {
			_, cancel := h.Subscribe(id)
			cancels = append(cancels, cancel)
		}
		var wg sync.WaitGroup
		for _, cancel := range cancels {
			wg.Go(cancel)
		}
		wg.Go(func() { h.Publish(upd(id, UpdateCompleted, 1)) })
		wg.Go(h.Close)
		wg.Wait()
		if n := h.Clients(); n != 0 {
			t.Fatalf("Clients = %d, want 0", n)
		}
	}
}

// TestSubscriberPushDropsOldestProgress fills a subscriber's queue (its goroutine is not
// running, so nothing is taken off it) and checks what push drops.
func TestSubscriberPushDropsOldestProgress(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	s := newSubscriber()
	s.push(upd(id, UpdateStatus, -1))
	for i := range SubscriberBufferSize - 1 {
		if _, dropped := s.push(upd(id, UpdateProgress, i)); dropped {
			t.Fatalf("push %d into a queue with room dropped an update", i)
		}
	}
	// Full: a new progress update replaces the oldest progress update, not the status.
	dropped, ok := s.push(upd(id, UpdateProgress, 100))
	if !ok || dropped.Kind != UpdateProgress || seqOf(t, dropped) != 0 {
		t.Errorf("push into a full queue dropped %+v (%v), want the oldest progress update (seq 0)", dropped, ok)
	}
	// A status update too.
	dropped, ok = s.push(upd(id, UpdateStatus, 101))
	if !ok || dropped.Kind != UpdateProgress || seqOf(t, dropped) != 1 {
		t.Errorf("status push into a full queue dropped %+v (%v), want the oldest progress update (seq 1)", dropped, ok)
	}
	// And the terminal update.
	dropped, ok = s.push(upd(id, UpdateCompleted, 102))
	if !ok || dropped.Kind != UpdateProgress || seqOf(t, dropped) != 2 {
		t.Errorf("completed push into a full queue dropped %+v (%v), want the oldest progress update (seq 2)", dropped, ok)
	}

	var want []int
	want = append(want, -1)
	for i := 3; i < SubscriberBufferSize-1; i++ {
		want = append(want, i)
	}
	want = append(want, 100, 101, 102)
	got := drain(t, s)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("queue = %v, want %v", got, want)
	}
	if len(got) != SubscriberBufferSize {
		t.Errorf("queue holds %d updates, want the buffer size %d", len(got), SubscriberBufferSize)
	}
}

func TestSubscriberPushFullOfStatus(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	s := newSubscriber()
	for i := range SubscriberBufferSize {
		s.push(upd(id, UpdateStatus, i))
	}
	// No progress update to drop: the new progress update is dropped.
	p := upd(id, UpdateProgress, 100)
	dropped, ok := s.push(p)
	if !ok || dropped.Kind != UpdateProgress || seqOf(t, dropped) != 100 {
		t.Errorf("progress push into a queue of status updates dropped %+v (%v), want the new update", dropped, ok)
	}
	// A status update drops the oldest status update.
	dropped, ok = s.push(upd(id, UpdateStatus, 101))
	if !ok || dropped.Kind != UpdateStatus || seqOf(t, dropped) != 0 {
		t.Errorf("status push dropped %+v (%v), want the oldest status (seq 0)", dropped, ok)
	}
	// The terminal update is never dropped: the oldest status update goes.
	dropped, ok = s.push(upd(id, UpdateFailed, 102))
	if !ok || dropped.Kind != UpdateStatus || seqOf(t, dropped) != 1 {
		t.Errorf("failed push dropped %+v (%v), want the oldest status (seq 1)", dropped, ok)
	}
	got := drain(t, s)
	if len(got) != SubscriberBufferSize || got[0] != 2 || got[len(got)-2] != 101 || got[len(got)-1] != 102 {
		t.Errorf("queue = %v, want status 2..63, 101, then failed 102", got)
	}
}

func TestSubscriberDropsAfterTerminal(t *testing.T) {
	t.Parallel()
	for _, terminal := range []string{UpdateCompleted, UpdateFailed, UpdateCancelled} {
		id := uuid.New()
		s := newSubscriber()
		s.push(upd(id, UpdateProgress, 1))
		if _, dropped := s.push(upd(id, terminal, 2)); dropped {
			t.Errorf("%s: terminal push dropped an update", terminal)
		}
		for i, k := range []string{UpdateCompleted, UpdateProgress, UpdateStatus, UpdateFailed} {
			u := upd(id, k, 10+i)
			dropped, ok := s.push(u)
			if !ok || seqOf(t, dropped) != 10+i {
				t.Errorf("%s: push of %s after the terminal update dropped %+v (%v), want the new update", terminal, k, dropped, ok)
			}
		}
		if got := drain(t, s); !reflect.DeepEqual(got, []int{1, 2}) {
			t.Errorf("%s: queue = %v, want [1 2]", terminal, got)
		}
	}
}

// drain pops every queued update and returns their seqs.
func drain(t *testing.T, s *subscriber) []int {
	t.Helper()
	var seqs []int
	for {
		u, ok := s.pop()
		if !ok {
			return seqs
		}
		seqs = append(seqs, seqOf(t, u))
	}
}

// TestHubSlowSubscriber publishes far more than the buffer holds to a subscriber that
// reads nothing, then reads: the newest progress updates and the terminal update arrive,
// in order.
func TestHubSlowSubscriber(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	id := uuid.New()
	ch, cancel := h.Subscribe(id)
	defer cancel()
	const n = 4 * SubscriberBufferSize
	for i := range n {
		h.Publish(upd(id, UpdateProgress, i))
	}
	h.Publish(upd(id, UpdateCompleted, n))
	h.Publish(upd(id, UpdateCompleted, n+1)) // a redelivery: dropped

	var got []int
	for {
		u := receive(t, ch)
		got = append(got, seqOf(t, u))
		if u.Kind == UpdateCompleted {
			break
		}
	}
	expectNothing(t, ch)
	// The subscriber's goroutine may hold one early update, taken before the queue filled.
	if len(got) != SubscriberBufferSize && len(got) != SubscriberBufferSize+1 {
		t.Fatalf("received %d updates, want %d or %d: %v", len(got), SubscriberBufferSize, SubscriberBufferSize+1, got)
	}
	tail := got[len(got)-SubscriberBufferSize:]
	for i, seq := range tail {
		if want := n - (SubscriberBufferSize - 1) + i; seq != want {
			t.Fatalf("received %v, want the last %d progress updates (from %d) and the completed update %d",
				got, SubscriberBufferSize-1, n-(SubscriberBufferSize-1), n)
		}
	}
	if len(got) > SubscriberBufferSize && got[0] >= tail[0] {
		t.Errorf("early update %d is not before the rest: %v", got[0], got)
	}
}

func TestUpdateFromEvent(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	at := time.Date(2030, 6, 7, 8, 9, 10, 0, time.UTC)
	loc := &task.Location{Directory: "d", Path: "d/x.json", Bytes: 9, SHA256: "abc"}
	num := func(n int) *int { return &n }
	frac := func(f float64) *float64 { return &f }
	text := func(s string) *string { return &s }
	tests := []struct {
		name      string
		event     events.Event
		wantKind  string
		wantPatch viewPatch
	}{
		{"progress", events.Event{Kind: events.KindProgress, TaskID: id, Attempt: 2, Priority: task.PriorityHigh, Progress: 0.42, Time: at},
			UpdateProgress, viewPatch{Progress: frac(0.42)}},
		{"accepted", events.Event{Kind: events.KindAccepted, TaskID: id, Attempt: 0, Priority: task.PriorityNormal, Time: at},
			UpdateStatus, viewPatch{Attempts: num(0), Priority: task.PriorityNormal, Status: task.StatusPending}},
		{"attempt failed", events.Event{Kind: events.KindAttemptFailed, TaskID: id, Attempt: 1, Priority: task.PriorityHigh, Error: "crash", Time: at},
			UpdateStatus, viewPatch{Attempts: num(1), Priority: task.PriorityHigh, Status: task.StatusPending}},
		{"started", events.Event{Kind: events.KindStarted, TaskID: id, Attempt: 1, Priority: task.PriorityNormal, Time: at},
			UpdateStatus, viewPatch{Attempts: num(1), Priority: task.PriorityNormal, Status: task.StatusRunning, StartedAt: &at, Progress: frac(0)}},
		{"started without priority", events.Event{Kind: events.KindStarted, TaskID: id, Attempt: 3, Time: at},
			UpdateStatus, viewPatch{Attempts: num(3), Status: task.StatusRunning, StartedAt: &at, Progress: frac(0)}},
		{"completed", events.Event{Kind: events.KindCompleted, TaskID: id, Attempt: 1, Priority: task.PriorityNormal, Time: at, Result: loc},
			UpdateCompleted, viewPatch{Attempts: num(1), Priority: task.PriorityNormal, Status: task.StatusCompleted, FinishedAt: &at, Progress: frac(1), Result: loc}},
		{"completed before its start event arrived", events.Event{Kind: events.KindCompleted, TaskID: id, Attempt: 2, Time: at, StartedAt: &at, Worker: "n/n-0"},
			UpdateCompleted, viewPatch{Attempts: num(2), Status: task.StatusCompleted, FinishedAt: &at, Progress: frac(1), StartedAt: &at, Worker: "n/n-0"}},
		{"failed with its last start", events.Event{Kind: events.KindFailed, TaskID: id, Attempt: 5, Time: at, StartedAt: &at, Error: "gave up"},
			UpdateFailed, viewPatch{Attempts: num(5), Status: task.StatusFailed, FinishedAt: &at, Error: text("gave up"), StartedAt: &at}},
		{"completed without result", events.Event{Kind: events.KindCompleted, TaskID: id, Attempt: 1, Time: at},
			UpdateCompleted, viewPatch{Attempts: num(1), Status: task.StatusCompleted, FinishedAt: &at, Progress: frac(1)}},
		{"failed", events.Event{Kind: events.KindFailed, TaskID: id, Attempt: 5, Priority: task.PriorityHigh, Time: at, Error: "gave up"},
			UpdateFailed, viewPatch{Attempts: num(5), Priority: task.PriorityHigh, Status: task.StatusFailed, FinishedAt: &at, Error: text("gave up")}},
		{"cancelled while running", events.Event{Kind: events.KindCancelled, TaskID: id, Attempt: 1, Time: at, StartedAt: &at, Worker: "n/n-0"},
			UpdateCancelled, viewPatch{Attempts: num(1), Status: task.StatusCancelled, FinishedAt: &at, StartedAt: &at, Worker: "n/n-0"}},
		{"unknown kind", events.Event{Kind: "exploded", TaskID: id, Attempt: 1, Time: at}, "", viewPatch{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := updateFromEvent(tt.event)
			if u.TaskID != id || u.Kind != tt.wantKind {
				t.Errorf("update %s %s, want %s for task %s", u.TaskID, u.Kind, tt.wantKind, id)
			}
			if !reflect.DeepEqual(u.Patch, tt.wantPatch) {
				t.Errorf("patch %s, want %s", describePatch(u.Patch), describePatch(tt.wantPatch))
			}
		})
	}
}

// describePatch shows what a patch's pointers point to.
func describePatch(p viewPatch) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// TestUpdateFromEventUnknownKindIgnored: the update of an unknown event reaches no stream.
func TestUpdateFromEventUnknownKindIgnored(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	id := uuid.New()
	ch, cancel := h.Subscribe(id)
	defer cancel()
	h.Publish(updateFromEvent(events.Event{Kind: "exploded", TaskID: id}))
	expectNothing(t, ch)
}
