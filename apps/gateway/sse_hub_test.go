package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
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

// upd returns an update of kind whose Data records seq.
func upd(id uuid.UUID, kind string, seq int) Update {
	return Update{TaskID: id, Kind: kind, Data: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, seq))}
}

func seqOf(t *testing.T, u Update) int {
	t.Helper()
	var d struct {
		Seq *int `json:"seq"`
	}
	if err := json.Unmarshal(u.Data, &d); err != nil || d.Seq == nil {
		t.Fatalf("update %s %s has no seq: %v", u.Kind, u.Data, err)
	}
	return *d.Seq
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
				t.Errorf("subscriber %s: update %d = %s %s, want %s seq %d", name, i, u.Kind, u.Data, k, i)
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
	h.Publish(Update{TaskID: id, Kind: "bogus", Data: json.RawMessage(`{}`)})
	h.Publish(Update{TaskID: id, Kind: "", Data: json.RawMessage(`{}`)})
	h.Publish(Update{TaskID: uuid.Nil, Kind: UpdateProgress, Data: json.RawMessage(`{}`)})
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
	type tagged struct {
		Pub int `json:"pub"`
		Seq int `json:"seq"`
	}
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
				data, _ := json.Marshal(tagged{Pub: p, Seq: i})
				h.Publish(Update{TaskID: ids[(p+i)%len(ids)], Kind: kind, Data: data})
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
					var d tagged
					if err := json.Unmarshal(u.Data, &d); err != nil {
						errs <- fmt.Errorf("subscriber %d: %w", s, err)
						return
					}
					if prev, ok := last[d.Pub]; ok && d.Seq <= prev {
						errs <- fmt.Errorf("subscriber %d: publisher %d's seq %d after %d", s, d.Pub, d.Seq, prev)
						return
					}
					last[d.Pub] = d.Seq
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
	const atJSON = `"2030-06-07T08:09:10Z"`
	tests := []struct {
		name     string
		event    events.Event
		wantKind string
		wantData string // JSON; "" for no data
	}{
		{"progress", events.Event{Kind: events.KindProgress, TaskID: id, Attempt: 2, Priority: task.PriorityHigh, Progress: 0.42, Time: at},
			UpdateProgress, `{"progress":0.42}`},
		{"accepted", events.Event{Kind: events.KindAccepted, TaskID: id, Attempt: 0, Priority: task.PriorityNormal, Time: at},
			UpdateStatus, `{"attempts":0,"priority":"normal","status":"pending"}`},
		{"attempt failed", events.Event{Kind: events.KindAttemptFailed, TaskID: id, Attempt: 1, Priority: task.PriorityHigh, Error: "crash", Time: at},
			UpdateStatus, `{"attempts":1,"priority":"high","status":"pending"}`},
		{"started", events.Event{Kind: events.KindStarted, TaskID: id, Attempt: 1, Priority: task.PriorityNormal, Time: at},
			UpdateStatus, `{"attempts":1,"priority":"normal","status":"running","started_at":` + atJSON + `,"progress":0}`},
		{"started without priority", events.Event{Kind: events.KindStarted, TaskID: id, Attempt: 3, Time: at},
			UpdateStatus, `{"attempts":3,"status":"running","started_at":` + atJSON + `,"progress":0}`},
		{"completed", events.Event{Kind: events.KindCompleted, TaskID: id, Attempt: 1, Priority: task.PriorityNormal, Time: at, Result: loc},
			UpdateCompleted, `{"attempts":1,"priority":"normal","status":"completed","finished_at":` + atJSON +
				`,"progress":1,"result":{"directory":"d","path":"d/x.json","bytes":9,"sha256":"abc"}}`},
		{"completed before its start event arrived", events.Event{Kind: events.KindCompleted, TaskID: id, Attempt: 2, Time: at, StartedAt: &at, Worker: "n/n-0"},
			UpdateCompleted, `{"attempts":2,"status":"completed","finished_at":` + atJSON + `,"progress":1,"started_at":` + atJSON + `,"worker":"n/n-0"}`},
		{"failed with its last start", events.Event{Kind: events.KindFailed, TaskID: id, Attempt: 5, Time: at, StartedAt: &at, Error: "gave up"},
			UpdateFailed, `{"attempts":5,"status":"failed","finished_at":` + atJSON + `,"error":"gave up","started_at":` + atJSON + `}`},
		{"completed without result", events.Event{Kind: events.KindCompleted, TaskID: id, Attempt: 1, Time: at},
			UpdateCompleted, `{"attempts":1,"status":"completed","finished_at":` + atJSON + `,"progress":1}`},
		{"failed", events.Event{Kind: events.KindFailed, TaskID: id, Attempt: 5, Priority: task.PriorityHigh, Time: at, Error: "gave up"},
			UpdateFailed, `{"attempts":5,"priority":"high","status":"failed","finished_at":` + atJSON + `,"error":"gave up"}`},
		{"cancelled while running", events.Event{Kind: events.KindCancelled, TaskID: id, Attempt: 1, Time: at, StartedAt: &at, Worker: "n/n-0"},
			UpdateCancelled, `{"attempts":1,"status":"cancelled","finished_at":` + atJSON + `,"started_at":` + atJSON + `,"worker":"n/n-0"}`},
		{"unknown kind", events.Event{Kind: "exploded", TaskID: id, Attempt: 1, Time: at}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := updateFromEvent(tt.event)
			if u.TaskID != id || u.Kind != tt.wantKind {
				t.Errorf("update %s %s, want %s for task %s", u.TaskID, u.Kind, tt.wantKind, id)
			}
			if tt.wantData == "" {
				if len(u.Data) != 0 {
					t.Errorf("data %s, want none", u.Data)
				}
				return
			}
			var got, want any
			if err := json.Unmarshal(u.Data, &got); err != nil {
				t.Fatalf("data %s: %v", u.Data, err)
			}
			if err := json.Unmarshal([]byte(tt.wantData), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("data %s, want %s", u.Data, tt.wantData)
			}
		})
	}
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
