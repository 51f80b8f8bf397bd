package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/queueactor"
	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// daprFake is the part of a sidecar the gateway's backend uses, in memory: a state store
// (first-write saves, transactions) and a queue actor that answers or is down.
type daprFake struct {
	mu           sync.Mutex
	items        map[string][]byte
	queueDown    bool
	enqueues     int // calls the queue answered
	transactions int
	queued       []task.Assignment
	hold         chan struct{} // if set, a queue call waits for it to close
	entered      int           // queue calls begun
	txHold       chan struct{} // if set, a state transaction waits for it to close
	txDown       bool          // state transactions fail
	saveLost     string        // a save of a key with this prefix is stored, and its caller told it failed (a timeout)
}

func newDaprFake() *daprFake { return &daprFake{items: map[string][]byte{}} }

func (f *daprFake) GetState(_ context.Context, _, key string, _ map[string]string) (*dapr.StateItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &dapr.StateItem{Key: key, Value: slices.Clone(f.items[key]), Etag: "1"}, nil
}

func (f *daprFake) SaveStateWithETag(_ context.Context, _, key string, data []byte, etag string, _ map[string]string, so ...dapr.StateOption) error {
	var opts dapr.StateOptions
	for _, o := range so {
		o(&opts)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, exists := f.items[key]; exists && etag == "" && opts.Concurrency == dapr.StateConcurrencyFirstWrite {
		return errors.New("possible etag mismatch")
	}
	f.items[key] = slices.Clone(data)
	if f.saveLost != "" && strings.HasPrefix(key, f.saveLost) {
		return context.DeadlineExceeded
	}
	return nil
}

func (f *daprFake) DeleteState(_ context.Context, _, key string, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.items, key)
	return nil
}

func (f *daprFake) GetBulkState(_ context.Context, _ string, keys []string, _ map[string]string, _ int32) ([]*dapr.BulkStateItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*dapr.BulkStateItem, len(keys))
	for i, k := range keys {
		out[i] = &dapr.BulkStateItem{Key: k, Value: slices.Clone(f.items[k]), Etag: "1"}
	}
	return out, nil
}

func (f *daprFake) ExecuteStateTransaction(ctx context.Context, _ string, _ map[string]string, ops []*dapr.StateOperation) error {
	f.mu.Lock()
	hold := f.txHold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.txDown {
		return errors.New("state store down")
	}
	f.transactions++
	for _, op := range ops {
		if op.Type == dapr.StateOperationTypeDelete {
			delete(f.items, op.Item.Key)
			continue
		}
		f.items[op.Item.Key] = slices.Clone(op.Item.Value)
	}
	return nil
}

func (f *daprFake) PublishEvent(context.Context, string, string, any, ...dapr.PublishEventOption) error {
	return nil
}

func (f *daprFake) InvokeActor(ctx context.Context, in *dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error) {
	f.mu.Lock()
	hold := f.hold
	f.entered++
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.queueDown {
		return nil, errors.New("no placement table")
	}
	var req queueactor.EnqueueRequest
	if err := json.Unmarshal(in.Data, &req); err != nil {
		return nil, err
	}
	f.queued = append(f.queued, req.Assignments...)
	f.enqueues++
	return &dapr.InvokeActorResponse{Data: []byte(`{"dispatched":0}`)}, nil
}

func (f *daprFake) InvokeMethodWithContent(context.Context, string, string, string, *dapr.DataContent) ([]byte, error) {
	return nil, errors.New("not here")
}

func (f *daprFake) InvokeMethod(context.Context, string, string, string) ([]byte, error) {
	return nil, errors.New("not here")
}

func (f *daprFake) setQueueDown(down bool) { f.mu.Lock(); f.queueDown = down; f.mu.Unlock() }
func (f *daprFake) answered() int          { f.mu.Lock(); defer f.mu.Unlock(); return f.enqueues }

type nopSender struct{}

func (nopSender) Send(context.Context, task.Event) error      { return nil }
func (nopSender) SendAll(context.Context, []task.Event) error { return nil }

// A submission whose queuing fails is answered 503 and settled in the background. When
// settling fails too, a task without an idempotency key has its record removed (nobody can
// reach it); one with a key keeps it, pending, because a retry with the key may have
// queued it meanwhile (here or through another gateway), and it is what that retry queues.
func TestSubmitSettleKeepsKeyedRecords(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		key      string
		wantKept bool
	}{
		{"without a key: removed", "", false},
		{"with a key: kept, and the retry queues it", "k-1", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newDaprFake()
			fake.setQueueDown(true)
			b := NewDaprBackend(slog.New(slog.NewTextHandler(io.Discard, nil)), fake, nopSender{}, nil, BackendOptions{})
			b.settleBudget = 50 * time.Millisecond
			rec, accepted := task.Accept(task.Record{ID: uuid.New(), Type: "noop", Directory: "d"}, time.Now())

			_, _, err := b.Submit(t.Context(), rec, accepted, tt.key)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Submit with the queue down = %v, want ErrUnavailable", err)
			}
			b.settling.Wait()
			_, _, gerr := b.tasks.Get(t.Context(), rec.ID)
			if kept := gerr == nil; kept != tt.wantKept {
				t.Fatalf("record kept = %v (%v), want %v", kept, gerr, tt.wantKept)
			}
			if !tt.wantKept {
				if !errors.Is(gerr, taskstore.ErrNotFound) {
					t.Fatalf("Get = %v, want not found", gerr)
				}
				return
			}
			// Tries that settle gave up on may still be in the batcher, and go out when
			// the queue is back (see batch.New): wait until none is left.
			waitFor(t, "the tries given up on to go out", b.enqueues.Idle)
			fake.setQueueDown(false)
			again, _ := task.Accept(task.Record{ID: uuid.New(), Type: "noop", Directory: "d"}, time.Now())
			got, created, err := b.Submit(t.Context(), again, accepted, tt.key)
			if err != nil || created || got.ID != rec.ID || fake.answered() != 1 {
				t.Fatalf("retry with the key = %s, created %v, %v, %d enqueues; want the first task, queued once", got.ID, created, err, fake.answered())
			}
		})
	}
}

// A pass queues its first attempts while it writes their records, not after: the queue
// is called with the write still on. An attempt whose record could not be written is
// queued all the same, and its submission answered 503 (the worker drops the attempt
// once task.RecordGrace is over: see the worker's and the storekeeper's tests).
func TestPassQueuesWhileItWrites(t *testing.T) {
	t.Parallel()
	for _, down := range []bool{false, true} {
		t.Run(fmt.Sprintf("write fails=%v", down), func(t *testing.T) {
			t.Parallel()
			fake := newDaprFake()
			fake.txHold = make(chan struct{})
			fake.txDown = down
			b := NewDaprBackend(slog.New(slog.NewTextHandler(io.Discard, nil)), fake, nopSender{}, nil, BackendOptions{})
			rec, accepted := task.Accept(task.Record{ID: uuid.New(), Type: "noop", Directory: "d"}, time.Now())
			done := make(chan error, 1)
			go func() { _, _, err := b.Submit(t.Context(), rec, accepted, ""); done <- err }()
			waitFor(t, "the queue call while the record's write is held", func() bool { return fake.answered() == 1 })
			select {
			case err := <-done:
				t.Fatalf("Submit returned (%v) before the record was written", err)
			default:
			}
			close(fake.txHold)
			err := <-done
			if down != errors.Is(err, ErrUnavailable) || !down && err != nil {
				t.Fatalf("Submit = %v, want ErrUnavailable only when the write fails", err)
			}
			if len(fake.queued) != 1 || fake.queued[0].TaskID != rec.ID {
				t.Fatalf("queued %+v, want the task's first attempt", fake.queued)
			}
			_, _, gerr := b.tasks.Get(t.Context(), rec.ID)
			if stored := gerr == nil; stored == down {
				t.Fatalf("record stored = %v (%v), want %v", stored, gerr, !down)
			}
		})
	}
}

// Submissions that arrive while a pass is on go through the next pass together: one
// transaction for their records, one queue call for their first attempts, and each is
// accepted, stored and queued once.
func TestSubmissionsShareAPass(t *testing.T) {
	t.Parallel()
	fake := newDaprFake()
	fake.hold = make(chan struct{})
	b := NewDaprBackend(slog.New(slog.NewTextHandler(io.Discard, nil)), fake, nopSender{}, nil, BackendOptions{})
	const n = 20
	ids := make([]uuid.UUID, n)
	errs := make([]error, n)
	created := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		rec, accepted := task.Accept(task.Record{ID: uuid.New(), Type: "noop", Directory: "d"}, time.Now())
		ids[i] = rec.ID
		wg.Go(func() { _, created[i], errs[i] = b.Submit(t.Context(), rec, accepted, "") })
		if i == 0 {
			waitFor(t, "the first pass to call the queue", func() bool { fake.mu.Lock(); defer fake.mu.Unlock(); return fake.entered == 1 })
		}
	}
	waitFor(t, "the others to gather", func() bool { return b.submissions.Pending() == n-1 })
	close(fake.hold)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !created[i] {
			t.Fatalf("submission %d: created %v, %v", i, created[i], errs[i])
		}
		if _, _, err := b.tasks.Get(t.Context(), ids[i]); err != nil {
			t.Errorf("submission %d: record %v", i, err)
		}
	}
	var queued []uuid.UUID
	for _, a := range fake.queued {
		queued = append(queued, a.TaskID)
		if a.Attempt != 1 || a.Redispatched || a.Spec == nil {
			t.Errorf("queued %+v: want attempt 1 with its spec, not redispatched", a)
		}
	}
	slices.SortFunc(queued, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(queued, ids) || fake.enqueues != 2 || fake.transactions != 2 {
		t.Errorf("%d attempts queued in %d calls after %d transactions; want the %d tasks once each, in 2 and 2 (the first alone, then the rest)", len(queued), fake.enqueues, fake.transactions, n)
	}
}

// recordingSender keeps what is sent, with the time of each send.
type recordingSender struct {
	mu    sync.Mutex
	sends [][]task.Event
	at    []time.Time
}

func (r *recordingSender) Send(ctx context.Context, e task.Event) error {
	return r.SendAll(ctx, []task.Event{e})
}

// got returns what was sent so far and when.
func (r *recordingSender) got() ([][]task.Event, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sends), slices.Clone(r.at)
}

func (r *recordingSender) SendAll(_ context.Context, evs []task.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sends = append(r.sends, slices.Clone(evs))
	r.at = append(r.at, time.Now())
	return nil
}

// delayedBackend returns a backend on an in-memory sidecar whose accepted events go to
// sender once they have waited 50 ms, and submit, which submits a noop task (the test
// fails unless it is created) and returns its accepted event.
func delayedBackend(t *testing.T) (b *DaprBackend, sender *recordingSender, submit func() task.Event) {
	sender = &recordingSender{}
	b = NewDaprBackend(slog.New(slog.NewTextHandler(io.Discard, nil)), newDaprFake(), sender, nil, BackendOptions{AcceptedDelay: 50 * time.Millisecond})
	submit = func() task.Event {
		t.Helper()
		rec, accepted := task.Accept(task.Record{ID: uuid.New(), Type: "noop", Directory: "d"}, time.Now())
		if _, created, err := b.Submit(t.Context(), rec, accepted, ""); err != nil || !created {
			t.Fatalf("submit: created %v, %v", created, err)
		}
		return accepted
	}
	return b, sender, submit
}

// A submission is answered once its record is stored and its attempt queued, without
// waiting for its accepted event. Each accepted event goes out once it has waited
// AcceptedDelay, in one send with the others that have: a send goes AcceptedDelay after
// the first event that waits, and one that came meanwhile waits for the next send. Flush
// sends what waits at once, however young.
func TestAcceptedEventsGoOutLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sender, submit := delayedBackend(t)
		start := time.Now()
		sent := func(i int, at time.Duration, ids ...string) {
			t.Helper()
			synctest.Wait()
			sends, ats := sender.got()
			if len(sends) != i+1 || ats[i].Sub(start) != at {
				t.Fatalf("sends %d (at %v), want %d, the last at %v", len(sends), ats, i+1, at)
			}
			var got []string
			for _, e := range sends[i] {
				got = append(got, e.ID)
			}
			if !slices.Equal(got, ids) {
				t.Errorf("send %d: %v, want %v", i, got, ids)
			}
		}
		first := submit().ID
		if answered := time.Since(start); answered != 0 {
			t.Errorf("answered after %v: the answer waited", answered)
		}
		time.Sleep(20 * time.Millisecond)
		second := submit().ID
		synctest.Wait()
		if sends, _ := sender.got(); len(sends) != 0 {
			t.Fatalf("sent %d times before the delay", len(sends))
		}
		time.Sleep(30 * time.Millisecond)
		sent(0, 50*time.Millisecond, first) // the second has waited 30 ms
		time.Sleep(50 * time.Millisecond)
		sent(1, 100*time.Millisecond, second)
		third := submit().ID
		time.Sleep(20 * time.Millisecond)
		fourth := submit().ID
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		b.Flush(ctx)
		sent(2, 120*time.Millisecond, third, fourth) // at once: the third has waited 20 ms, the fourth none
		if sends, _ := sender.got(); len(sends) != 3 {
			t.Errorf("%d sends after Flush, want 3", len(sends))
		}
	})
}

// An accepted event the feed delivered while it waited (its task's first start carried
// it) is not published again; a batch of such events costs no publish at all.
func TestAcceptedEventsSeenAreNotPublishedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sender, submit := delayedBackend(t)
		started, waiting := submit(), submit()
		b.AcceptedSeen(started.TaskID)
		b.AcceptedSeen(uuid.New()) // a task of another gateway: nothing to do here
		time.Sleep(time.Minute)
		synctest.Wait()
		if sends, _ := sender.got(); len(sends) != 1 || len(sends[0]) != 1 || sends[0][0].ID != waiting.ID {
			t.Fatalf("sends %v, want only %s", sends, waiting.ID)
		}
		b.AcceptedSeen(submit().TaskID)
		time.Sleep(time.Minute)
		synctest.Wait()
		if sends, _ := sender.got(); len(sends) != 1 {
			t.Fatalf("sends %v: a batch of events seen on the feed was published", sends)
		}
		if len(b.waiting) != 0 {
			t.Errorf("%d tasks still noted as waiting", len(b.waiting))
		}
	})
}

// A submission with a large payload stores its record in a call of its own (and its
// payload apart from it), and shares only the queue call with the pass: the pass's
// transaction carries the small records, so they do not wait for its megabytes.
func TestLargeSubmissionStoresItsOwnRecord(t *testing.T) {
	t.Parallel()
	fake := newDaprFake()
	b := NewDaprBackend(slog.New(slog.NewTextHandler(io.Discard, nil)), fake, nopSender{}, nil, BackendOptions{})
	large := json.RawMessage(`{"data":"` + strings.Repeat("x", taskstore.InlinePayloadMax) + `"}`)
	for _, tc := range []struct {
		payload json.RawMessage
		txs     int // the pass's record transactions
	}{
		{json.RawMessage(`{}`), 1},
		{large, 0},
	} {
		before := fake.transactions
		rec, accepted := task.Accept(task.Record{ID: uuid.New(), Type: "hash", Payload: tc.payload, Directory: "d"}, time.Now())
		if _, created, err := b.Submit(t.Context(), rec, accepted, ""); err != nil || !created {
			t.Fatalf("submit a payload of %d bytes: created %v, %v", len(tc.payload), created, err)
		}
		got, _, err := b.tasks.Get(t.Context(), rec.ID)
		if err != nil {
			t.Fatalf("record of a payload of %d bytes: %v", len(tc.payload), err)
		}
		if p, err := b.tasks.Payload(t.Context(), got); err != nil || !bytes.Equal(p, tc.payload) {
			t.Fatalf("the payload of %d bytes read back as %d bytes, %v", len(tc.payload), len(p), err)
		}
		if got := fake.transactions - before; got != tc.txs {
			t.Errorf("a payload of %d bytes: %d record transactions, want %d", len(tc.payload), got, tc.txs)
		}
	}
}

// A submission without a key whose record (and payload kept apart) was stored by a write
// reported failed is answered 503, and what the write left is removed: nobody has the
// task's id. With a key, the record stays for the retry.
func TestFailedOwnWriteLeavesNothing(t *testing.T) {
	t.Parallel()
	large := json.RawMessage(`{"data":"` + strings.Repeat("x", taskstore.InlinePayloadMax) + `"}`)
	for _, tc := range []struct {
		name string
		key  string
		want int // keys left
	}{
		{"large payload, no key: record and payload removed", "", 0},
		{"large payload, a key: the key, record and payload kept", "k-1", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newDaprFake()
			b := NewDaprBackend(slog.New(slog.NewTextHandler(io.Discard, nil)), fake, nopSender{}, nil, BackendOptions{})
			b.removeAfter = 10 * time.Millisecond
			rec, accepted := task.Accept(task.Record{ID: uuid.New(), Type: "hash", Payload: large, Directory: "d"}, time.Now())
			fake.saveLost = "task-"
			if _, _, err := b.Submit(t.Context(), rec, accepted, tc.key); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Submit with a write reported failed = %v, want ErrUnavailable", err)
			}
			b.settling.Wait()
			fake.mu.Lock()
			defer fake.mu.Unlock()
			if len(fake.items) != tc.want {
				t.Errorf("%d keys left (%v), want %d", len(fake.items), slices.Collect(maps.Keys(fake.items)), tc.want)
			}
		})
	}
}
