package queue

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/task"
)

// memStore is an in-memory Store; failNext makes the next Apply fail.
type memStore struct {
	mu       sync.Mutex
	data     map[string][]byte
	failNext bool
	applies  int
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}} }

func (s *memStore) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[key], nil
}

func (s *memStore) Apply(_ context.Context, ops []Op) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applies++
	if s.failNext {
		s.failNext = false
		return errors.New("store down")
	}
	for _, op := range ops {
		if op.Value == nil {
			delete(s.data, op.Key)
		} else {
			s.data[op.Key] = op.Value
		}
	}
	return nil
}

// recorder is a DispatchFunc that records what each slot got; failing slots refuse.
type recorder struct {
	mu      sync.Mutex
	got     []string // "slot=task"
	failing map[string]bool
	names   map[uuid.UUID]string
}

func (r *recorder) dispatch(_ context.Context, slot string, a task.Assignment) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing[slot] {
		return errors.New("slot gone")
	}
	r.got = append(r.got, slot+"="+r.names[a.TaskID])
	return nil
}

func newRecorder() *recorder {
	return &recorder{failing: map[string]bool{}, names: map[uuid.UUID]string{}}
}

func (r *recorder) assignment(name string, p task.Priority) task.Assignment {
	id := uuid.New()
	r.names[id] = name
	return task.Assignment{TaskID: id, Attempt: 1, Priority: p, Enqueued: time.Now()}
}

func TestPriorityThenFIFO(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rec := newRecorder()
	q := New(newMemStore(), rec.dispatch)
	batch := []task.Assignment{
		rec.assignment("n1", task.PriorityNormal),
		rec.assignment("n2", task.PriorityNormal),
		rec.assignment("h1", task.PriorityHigh),
		rec.assignment("n3", task.PriorityNormal),
		rec.assignment("h2", task.PriorityHigh),
	}
	if n, err := q.Enqueue(ctx, batch); err != nil || n != 0 {
		t.Fatalf("Enqueue = %d, %v; want 0 dispatched (no idle slot)", n, err)
	}
	if d, _ := q.Depth(ctx); d != (Depth{High: 2, Normal: 3}) {
		t.Fatalf("depth = %+v", d)
	}
	for range batch {
		if _, err := q.Idle(ctx, "w"); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"w=h1", "w=h2", "w=n1", "w=n2", "w=n3"}
	if fmt.Sprint(rec.got) != fmt.Sprint(want) {
		t.Fatalf("dispatch order = %v, want %v", rec.got, want)
	}
	if a, err := q.Idle(ctx, "w"); a != nil || err != nil {
		t.Fatalf("Idle on empty queue = %v, %v", a, err)
	}
	if d, _ := q.Depth(ctx); d != (Depth{Idle: 1}) {
		t.Fatalf("depth after draining = %+v, want one idle slot", d)
	}
}

func TestIdleSlotsGetWorkPushed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rec := newRecorder()
	q := New(newMemStore(), rec.dispatch)
	for _, slot := range []string{"a", "b", "a"} { // a asks twice: listed once
		if _, err := q.Idle(ctx, slot); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := q.Snapshot(ctx); err != nil || fmt.Sprint(s.IdleSlots) != "[a b]" || s.Idle != 2 {
		t.Fatalf("Snapshot = %+v, %v; want idle slots [a b], oldest first", s, err)
	}
	n, err := q.Enqueue(ctx, []task.Assignment{
		rec.assignment("t1", task.PriorityNormal), rec.assignment("t2", task.PriorityNormal), rec.assignment("t3", task.PriorityNormal),
	})
	if err != nil || n != 2 {
		t.Fatalf("Enqueue dispatched %d, %v; want 2 (two idle slots)", n, err)
	}
	// Pushed at once: the pairs count, not the order of the calls.
	if got := slices.Sorted(slices.Values(rec.got)); fmt.Sprint(got) != "[a=t1 b=t2]" {
		t.Fatalf("dispatched %v, want longest-idle first", got)
	}
	if d, _ := q.Depth(ctx); d != (Depth{Normal: 1}) {
		t.Fatalf("depth = %+v, want t3 waiting", d)
	}
	if s, err := q.Snapshot(ctx); err != nil || len(s.IdleSlots) != 0 || s.Depth != (Depth{Normal: 1}) {
		t.Fatalf("Snapshot = %+v, %v; want t3 waiting and no idle slot", s, err)
	}
}

func TestFailedDispatchDropsSlotAndKeepsTask(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rec := newRecorder()
	rec.failing["dead"] = true
	q := New(newMemStore(), rec.dispatch)
	q.Idle(ctx, "dead")
	q.Idle(ctx, "live")
	if n, err := q.Enqueue(ctx, []task.Assignment{rec.assignment("t1", task.PriorityNormal)}); err != nil || n != 1 {
		t.Fatalf("Enqueue = %d, %v", n, err)
	}
	if fmt.Sprint(rec.got) != "[live=t1]" {
		t.Fatalf("dispatched %v", rec.got)
	}
	// Now no slot is idle; a dead slot asking for work with a task waiting keeps the task.
	q.Enqueue(ctx, []task.Assignment{rec.assignment("t2", task.PriorityNormal)})
	if _, err := q.Idle(ctx, "dead"); err == nil {
		t.Fatal("Idle for a slot that cannot take work succeeded")
	}
	if d, _ := q.Depth(ctx); d.Normal != 1 {
		t.Fatalf("task lost after failed dispatch: depth %+v", d)
	}
}

// A push that hangs until it times out ends the search for a slot: the task is queued
// and the other idle slot stays idle, so the turn stays short.
func TestSlowFailedPushQueuesTheTask(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rec := newRecorder()
	slow := func(ctx context.Context, slot string, a task.Assignment) error {
		if slot == "stuck" {
			time.Sleep(PushBudget + 50*time.Millisecond) // a push timing out
			return errors.New("push timed out")
		}
		return rec.dispatch(ctx, slot, a)
	}
	q := New(newMemStore(), slow)
	q.Idle(ctx, "stuck")
	q.Idle(ctx, "live")
	if n, err := q.Enqueue(ctx, []task.Assignment{rec.assignment("t1", task.PriorityNormal)}); err != nil || n != 0 {
		t.Fatalf("Enqueue = %d, %v; want 0 dispatched", n, err)
	}
	if d, _ := q.Depth(ctx); d != (Depth{Normal: 1, Idle: 1}) {
		t.Fatalf("depth = %+v, want the task queued and live still idle", d)
	}
	// live asks again (as its worker does): it gets the task.
	if a, err := q.Idle(ctx, "live"); err != nil || a == nil {
		t.Fatalf("Idle(live) = %v, %v", a, err)
	}
	if fmt.Sprint(rec.got) != "[live=t1]" {
		t.Fatalf("dispatched %v", rec.got)
	}
}

func TestStateSurvivesReloadAndFailedWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rec := newRecorder()
	store := newMemStore()
	q := New(store, rec.dispatch)
	q.Enqueue(ctx, []task.Assignment{rec.assignment("n1", task.PriorityNormal), rec.assignment("h1", task.PriorityHigh)})

	store.failNext = true
	if _, err := q.Enqueue(ctx, []task.Assignment{rec.assignment("lost", task.PriorityNormal)}); err == nil {
		t.Fatal("Enqueue succeeded although the store failed")
	}
	snapshot := maps.Clone(store.data)

	// A new activation (another process) sees exactly what was committed.
	q2 := New(store, rec.dispatch)
	if d, _ := q2.Depth(ctx); d != (Depth{High: 1, Normal: 1}) {
		t.Fatalf("depth after reload = %+v", d)
	}
	store.failNext = true
	if _, err := q2.Idle(ctx, "w"); err == nil {
		t.Fatal("Idle succeeded although the store failed")
	}
	q2.Forget()
	q2.Idle(ctx, "w")
	q2.Idle(ctx, "w")
	// h1 was dispatched twice (once before the failed commit): at least once, never lost.
	if fmt.Sprint(rec.got) != "[w=h1 w=h1 w=n1]" {
		t.Fatalf("dispatched %v", rec.got)
	}
	if len(snapshot) != 3 { // meta + two entries
		t.Fatalf("stored keys after failed write = %v", maps.Keys(snapshot))
	}
	if len(store.data) != 1 { // only meta is left: entries are deleted when taken
		t.Fatalf("keys left after draining: %d", len(store.data))
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	q := New(newMemStore(), newRecorder().dispatch)
	if _, err := q.Enqueue(t.Context(), []task.Assignment{{TaskID: uuid.New(), Priority: "urgent"}}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad priority: %v", err)
	}
	if _, err := q.Idle(t.Context(), ""); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("empty slot: %v", err)
	}
}

// Producers and consumers from many goroutines, serialised as the actor runtime does:
// every task is dispatched exactly once and none is lost.
func TestConcurrentProducersAndConsumers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var turn sync.Mutex
	var mu sync.Mutex
	seen := map[uuid.UUID]int{}
	q := New(newMemStore(), func(_ context.Context, _ string, a task.Assignment) error {
		mu.Lock()
		seen[a.TaskID]++
		mu.Unlock()
		return nil
	})
	const producers, perProducer, consumers = 4, 250, 4
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				prio := task.PriorityNormal
				if i%3 == 0 {
					prio = task.PriorityHigh
				}
				turn.Lock()
				_, err := q.Enqueue(ctx, []task.Assignment{{TaskID: uuid.New(), Attempt: 1, Priority: prio}})
				turn.Unlock()
				if err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
			}
		})
	}
	for c := range consumers {
		wg.Go(func() {
			for range producers * perProducer {
				turn.Lock()
				_, err := q.Idle(ctx, fmt.Sprintf("w%d", c))
				turn.Unlock()
				if err != nil {
					t.Errorf("consumer %d: %v", c, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Drain what is left.
	for {
		d, _ := q.Depth(ctx)
		if d.High+d.Normal == 0 {
			break
		}
		q.Idle(ctx, "drain")
	}
	if len(seen) != producers*perProducer {
		t.Fatalf("%d tasks dispatched, want %d", len(seen), producers*perProducer)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("task %s dispatched %d times", id, n)
		}
	}
}

// Cost per operation does not grow with depth: the number of keys touched is constant.
func BenchmarkEnqueueDequeue(b *testing.B) {
	for _, depth := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			ctx := context.Background()
			store := newMemStore()
			q := New(store, func(context.Context, string, task.Assignment) error { return nil })
			batch := make([]task.Assignment, 1000)
			for i := range batch {
				batch[i] = task.Assignment{TaskID: uuid.New(), Attempt: 1, Priority: task.PriorityNormal}
			}
			for range depth / len(batch) {
				q.Enqueue(ctx, batch)
			}
			one := batch[:1]
			b.ResetTimer()
			for b.Loop() {
				q.Enqueue(ctx, one)
				q.Idle(ctx, "w")
			}
		})
	}
}

// The queue stamps enqueue and dispatch times on its own clock, whatever the caller
// sent: times of different tasks then order exactly.
func TestQueueStampsTimes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var sent []task.Assignment
	q := New(newMemStore(), func(_ context.Context, _ string, a task.Assignment) error { sent = append(sent, a); return nil })
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	q.now = func() time.Time { clock = clock.Add(time.Second); return clock }

	late := task.Assignment{TaskID: uuid.New(), Attempt: 1, Priority: task.PriorityNormal, Enqueued: time.Unix(0, 0)}
	if _, err := q.Enqueue(ctx, []task.Assignment{late}); err != nil { // queued: no idle slot
		t.Fatal(err)
	}
	if _, err := q.Idle(ctx, "w"); err != nil { // dispatched from the queue
		t.Fatal(err)
	}
	now := task.Assignment{TaskID: uuid.New(), Attempt: 1, Priority: task.PriorityNormal}
	if _, err := q.Idle(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(ctx, []task.Assignment{now}); err != nil { // straight to the idle slot
		t.Fatal(err)
	}
	want := []struct{ enq, disp int }{{1, 2}, {3, 4}} // seconds after the start of the clock
	if len(sent) != 2 {
		t.Fatalf("sent %d assignments, want 2", len(sent))
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, w := range want {
		if got := sent[i]; !got.Enqueued.Equal(start.Add(time.Duration(w.enq)*time.Second)) || !got.Dispatched.Equal(start.Add(time.Duration(w.disp)*time.Second)) {
			t.Errorf("assignment %d stamped enqueued %s, dispatched %s; want +%ds, +%ds", i, got.Enqueued, got.Dispatched, w.enq, w.disp)
		}
	}
	if !late.Enqueued.Equal(time.Unix(0, 0)) {
		t.Error("Enqueue changed the caller's assignment")
	}
}

// uncertainStore applies a write and then reports it failed, once: the outcome of a
// write cut short is unknown to the writer.
type uncertainStore struct {
	*memStore
	failAfterNext bool
}

func (s *uncertainStore) Apply(ctx context.Context, ops []Op) error {
	if err := s.memStore.Apply(ctx, ops); err != nil {
		return err
	}
	if s.failAfterNext {
		s.failAfterNext = false
		return errors.New("write timed out")
	}
	return nil
}

// A write that failed after being applied must not make the queue reuse the key of an
// entry already stored: every task queued is dispatched.
func TestWriteWithUnknownOutcomeLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rec := newRecorder()
	store := &uncertainStore{memStore: newMemStore()}
	q := New(store, rec.dispatch)
	a, b := rec.assignment("a", task.PriorityNormal), rec.assignment("b", task.PriorityNormal)
	store.failAfterNext = true
	if _, err := q.Enqueue(ctx, []task.Assignment{a}); err == nil {
		t.Fatal("Enqueue = nil, want the write error")
	}
	if _, err := q.Enqueue(ctx, []task.Assignment{b}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := q.Idle(ctx, "w"); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(rec.got); got != "[w=a w=b]" {
		t.Fatalf("dispatched %s, want a then b", got)
	}
}

// A node offers several slots in one call: each gets the next task, highest priority
// first; the slots left over become idle.
func TestOfferManySlots(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rec := newRecorder()
	q := New(newMemStore(), rec.dispatch)
	q.Enqueue(ctx, []task.Assignment{rec.assignment("n1", task.PriorityNormal), rec.assignment("h1", task.PriorityHigh)})
	given, refused, err := q.Offer(ctx, []string{"a", "b", "c", "a"})
	if err != nil || len(refused) != 0 || len(given) != 2 {
		t.Fatalf("Offer = %v, %v; want two tasks handed out", given, err)
	}
	if got := slices.Sorted(slices.Values(rec.got)); fmt.Sprint(got) != "[a=h1 b=n1]" {
		t.Fatalf("dispatched %v, want a=h1 (high first) and b=n1", got)
	}
	if s, _ := q.Snapshot(ctx); fmt.Sprint(s.IdleSlots) != "[c]" || s.High+s.Normal != 0 {
		t.Fatalf("snapshot %+v, want only c idle and nothing waiting", s)
	}
	if _, _, err := q.Offer(ctx, nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("Offer(no slots) = %v, want ErrBadRequest", err)
	}
}

// A slot whose push fails among several keeps nothing and its task is not lost: it
// is the next one handed out, before the tasks behind it.
func TestOfferWithAFailingSlotKeepsItsTask(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rec := newRecorder()
	rec.failing["dead"] = true
	q := New(newMemStore(), rec.dispatch)
	q.Enqueue(ctx, []task.Assignment{
		rec.assignment("e1", task.PriorityNormal), rec.assignment("e2", task.PriorityNormal),
		rec.assignment("e3", task.PriorityNormal), rec.assignment("e4", task.PriorityNormal),
	})
	given, refused, err := q.Offer(ctx, []string{"a", "dead", "c"})
	if err != nil || len(refused) != 1 || !strings.Contains(refused[0].Error(), "dead") || len(given) != 2 {
		t.Fatalf("Offer = %v, %v, %v; want two handed out and the dead slot's refusal", given, refused, err)
	}
	if got := slices.Sorted(slices.Values(rec.got)); fmt.Sprint(got) != "[a=e1 c=e3]" {
		t.Fatalf("dispatched %v", got)
	}
	if a, err := q.Idle(ctx, "x"); err != nil || a == nil || rec.names[a.TaskID] != "e2" {
		t.Fatalf("next Idle = %v, %v; want e2, the task the dead slot did not take", a, err)
	}
	if a, err := q.Idle(ctx, "y"); err != nil || a == nil || rec.names[a.TaskID] != "e4" {
		t.Fatalf("then Idle = %v, %v; want e4 (e3 was handed out already)", a, err)
	}
	if a, err := q.Idle(ctx, "z"); err != nil || a != nil {
		t.Fatalf("then Idle = %v, %v; want nothing left", a, err)
	}
	if d, _ := q.Depth(ctx); d != (Depth{Idle: 1}) {
		t.Fatalf("depth = %+v, want empty with z idle", d)
	}
	if n := len(rec.got); n != 4 {
		t.Fatalf("%d dispatches, want each task once: %v", n, rec.got)
	}
}

// An enqueued batch goes to all idle slots at once; a slot that refuses is dropped and
// its task goes to the next idle slot, or waits at the front of the queue.
func TestEnqueueBatchToIdleSlots(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rec := newRecorder()
	rec.failing["dead"] = true
	q := New(newMemStore(), rec.dispatch)
	for _, s := range []string{"a", "dead", "b", "c"} {
		q.Idle(ctx, s)
	}
	n, err := q.Enqueue(ctx, []task.Assignment{
		rec.assignment("t1", task.PriorityNormal), rec.assignment("t2", task.PriorityNormal),
		rec.assignment("t3", task.PriorityNormal), rec.assignment("t4", task.PriorityNormal),
	})
	if err != nil || n != 3 {
		t.Fatalf("Enqueue = %d, %v; want 3 dispatched", n, err)
	}
	if got := slices.Sorted(slices.Values(rec.got)); fmt.Sprint(got) != "[a=t1 b=t3 c=t4]" {
		t.Fatalf("dispatched %v", got)
	}
	// t2, refused by dead, waits first in line.
	if a, err := q.Idle(ctx, "d"); err != nil || a == nil || rec.names[a.TaskID] != "t2" {
		t.Fatalf("Idle = %v, %v; want t2", a, err)
	}
	if d, _ := q.Depth(ctx); d != (Depth{}) {
		t.Fatalf("depth = %+v, want empty, dead dropped from the idle list", d)
	}
}
