package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/actorhost"
	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/queueactor"
	"github.com/taskgrid/taskgrid/internal/adapters/recent"
	"github.com/taskgrid/taskgrid/internal/adapters/storekeeper"
	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/batch"
	"github.com/taskgrid/taskgrid/internal/platform/retry"
)

// DaprClient is what the gateway's backend uses of the Dapr client.
type DaprClient interface {
	taskstore.StateClient
	events.Publisher
	actorhost.Invoker
	storekeeper.Invoker
}

// DaprBackend implements Backend with the state store (task records), the queue actor
// and the storekeeper, all through the sidecar.
type DaprBackend struct {
	logger *slog.Logger
	client DaprClient
	events events.BatchSender
	tasks  *taskstore.Store
	queue  queueactor.Client
	// submissions takes concurrent submissions through their two steps together: one
	// state transaction for their records and, at the same time, one queue call for their
	// first attempts (submitBatch). One batch for the whole way, rather than a batch per
	// step, makes each batch the submissions that arrived during a whole pass, not during
	// one call: fewer calls per task under load, for the same wait. Passes that follow one
	// another start SubmitSpacing apart.
	submissions *batch.Batcher[*submission]
	// accepted publishes the accepted events of the passes (through the outbox), each
	// once it has waited AcceptedDelay, in one bulk publish per delay at most (a
	// Delayed batcher): see BackendOptions.
	accepted *batch.Batcher[[]task.Event]
	// waiting are the tasks whose accepted events wait in accepted: true once the feed
	// delivered the event from its task's first start (AcceptedSeen), which makes
	// publishing it again pointless.
	waitMu  sync.Mutex
	waiting map[uuid.UUID]bool
	// enqueues gathers the attempts queued outside a submission's pass (a retry of a
	// failed try, a keyed repeat, settle) into one call of the queue actor.
	enqueues *batch.Batcher[task.Assignment]
	// settleBudget bounds settle (settleBudget; tests set less); settling are its runs.
	settleBudget time.Duration
	// removeAfter is how long after a failed write of its own a submission's record is
	// removed (submitBudget, past which its write's deadline has gone; tests set less).
	removeAfter time.Duration
	settling    sync.WaitGroup
}

// BackendOptions are the gateway backend's timings.
type BackendOptions struct {
	// Records is the task records' store (appserver.App.Records, which the app waits for
	// on its way out); nil: one over the backend's client that keeps records for ever.
	Records *taskstore.Store
	// SubmitSpacing is the least time between the starts of two submission passes that
	// follow one another (0: none).
	SubmitSpacing time.Duration
	// AcceptedDelay is how long after a task is accepted its accepted event is published
	// at the soonest, and before twice that, with the others due, in one bulk publish (0:
	// at once, one publish in flight at a time). The answer does not wait for it: the
	// event is for analytics (the gateways' feeds drop it), and a publish with its
	// deliveries (the broker, every gateway's sidecar, analytics and MySQL) in the middle
	// of the task's first milliseconds slowed them; a task whose gateway dies before
	// publishing it has it published by its first start or cancel (task.Accepted).
	AcceptedDelay time.Duration
}

// NewDaprBackend returns the gateway's backend. here is the queue actor type this
// process hosts (nil: every queue call goes through the sidecar).
func NewDaprBackend(logger *slog.Logger, client DaprClient, sender events.BatchSender, here *queueactor.Actor, opts BackendOptions) *DaprBackend {
	tasks := opts.Records
	if tasks == nil {
		tasks = taskstore.New(client, components.StateStore)
	}
	b := &DaprBackend{
		logger: logger.With("component", "backend"), client: client, events: sender,
		tasks: tasks, queue: queueactor.Client{Invoker: client, Here: here},
		settleBudget: settleBudget,
		removeAfter:  submitBudget,
	}
	b.enqueues = batch.New(context.Background(), enqueueBatchMax, func(ctx context.Context, as []task.Assignment) error {
		ctx, cancel := context.WithTimeout(ctx, enqueueTryTimeout)
		defer cancel()
		_, err := b.queue.Enqueue(ctx, as...)
		return err
	})
	b.submissions = batch.New(context.Background(), enqueueBatchMax, b.submitBatch).Spaced(opts.SubmitSpacing)
	b.accepted = batch.New(context.Background(), 0, b.publishAccepted).Delayed(opts.AcceptedDelay)
	b.waiting = map[uuid.UUID]bool{}
	return b
}

// deferAccepted hands accepted events to b.accepted.
func (b *DaprBackend) deferAccepted(evs []task.Event) {
	b.waitMu.Lock()
	for _, e := range evs {
		b.waiting[e.TaskID] = false
	}
	b.waitMu.Unlock()
	b.accepted.Add(evs)
}

// AcceptedSeen notes that the feed delivered the accepted event of task id: published by
// the task's first start (task.Accepted), it is on the broker already, and if it still
// waits here it is not published again. A task that starts within AcceptedDelay, as every
// task does at light load, so costs its gateway no publish of its own.
func (b *DaprBackend) AcceptedSeen(id uuid.UUID) {
	b.waitMu.Lock()
	defer b.waitMu.Unlock()
	if _, ok := b.waiting[id]; ok {
		b.waiting[id] = true
	}
}

// publishAccepted publishes the accepted events of passes, those the feed has not
// delivered already, in one send (the outbox spools what the broker does not take).
// Each has waited AcceptedDelay (unless the gateway is stopping, see Flush): so every
// task has had that long to start and carry its event itself.
func (b *DaprBackend) publishAccepted(ctx context.Context, passes [][]task.Event) error {
	var evs []task.Event
	b.waitMu.Lock()
	for _, e := range slices.Concat(passes...) {
		if !b.waiting[e.TaskID] {
			evs = append(evs, e)
		}
		delete(b.waiting, e.TaskID)
	}
	b.waitMu.Unlock()
	if len(evs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, acceptedSendTimeout)
	defer cancel()
	if err := b.events.SendAll(ctx, evs); err != nil {
		b.logger.ErrorContext(ctx, "could not publish or spool accepted events; each goes out with its task's first start", "events", len(evs), "first_event_id", evs[0].ID, "error", err)
	}
	return nil
}

// Flush publishes the accepted events that wait for their delay, and waits for them,
// until ctx ends: on shutdown, while the sidecar is there.
func (b *DaprBackend) Flush(ctx context.Context) {
	b.accepted.Flush()
	for !b.accepted.Idle() {
		select {
		case <-ctx.Done():
			b.logger.WarnContext(ctx, "stopped before every accepted event was published; each goes out with its task's first start", "waiting", b.accepted.Pending())
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// submission is one task on its way through a pass of submitBatch, and how far it got.
// The pass fills err and queueErr, then closes done.
type submission struct {
	rec      task.Record
	accepted task.Event
	stored   bool  // its record is stored already (a keyed submission's, stored on its own)
	err      error // the record could not be stored: the submission failed
	queueErr error // the first try of queuing it failed (it may have got through all the same)
	done     chan struct{}
}

func newSubmission(rec task.Record, accepted task.Event) *submission {
	return &submission{rec: rec, accepted: accepted, done: make(chan struct{})}
}

// submitBatch stores the records of subs not stored yet (one transaction) and queues the
// first attempts of them all (one call, one try) at the same time; then it hands the
// accepted events of those both stored and queued to b.accepted, published a while
// later (BackendOptions.AcceptedDelay). Each submission's outcome is in its fields; the
// batch's error is nil.
//
// The queue call does not wait for the records' write: the queue pushes an attempt to
// an idle slot as it takes it, so a task starts a write's round trip sooner (submit →
// started at 10 tasks/s: docs/benchmarks-history.md, "The thirteenth session"). A worker or the storekeeper
// may then look for a record that is not written yet: for a first attempt queued within
// task.RecordGrace they look again, and after it take the task for one that does not
// exist. That is also what becomes of an attempt whose record could not be written: its
// submission is answered 503 (as when its queuing fails), and the attempt, queued all the
// same, is dropped by its worker once the grace is over.
func (b *DaprBackend) submitBatch(ctx context.Context, subs []*submission) error {
	var recs []task.Record
	as := make([]task.Assignment, len(subs))
	for i, s := range subs {
		if !s.stored {
			recs = append(recs, s.rec)
		}
		as[i] = firstAttempt(s.rec, false)
	}
	var createErr error
	var writing sync.WaitGroup
	if len(recs) > 0 {
		writing.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, createTimeout)
			defer cancel()
			createErr = b.tasks.CreateMany(cctx, recs)
		})
	}
	ectx, cancel := context.WithTimeout(ctx, enqueueTryTimeout)
	_, err := b.queue.Enqueue(ectx, as...)
	cancel()
	writing.Wait()
	var accepted []task.Event
	for _, s := range subs {
		if !s.stored {
			s.err, s.stored = createErr, createErr == nil
		}
		if s.err == nil {
			s.queueErr = err
		}
		if s.err == nil && err == nil {
			accepted = append(accepted, s.accepted)
		}
		close(s.done)
	}
	if len(accepted) > 0 {
		b.deferAccepted(accepted)
	}
	return nil
}

// Submit stores the task record, then queues its first attempt. The task is accepted
// only once both are durable. If queuing fails within the submission's budget, the answer
// is ErrUnavailable at once and queuing goes on in the background (settle): the task is
// then queued with its record, or its record is removed, never left half. With an
// idempotency key, a repeated request
// returns the first task; if the first request died between storing and queuing, the
// repeat queues it (a second entry of the attempt is harmless: the queue hands an
// attempt out once, see queue.Queue).
func (b *DaprBackend) Submit(ctx context.Context, rec task.Record, accepted task.Event, key string) (task.Record, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, submitBudget)
	defer cancel()
	sub := newSubmission(rec, accepted)
	if key != "" {
		bound, claimed, err := b.tasks.ClaimIdempotencyKey(ctx, key, rec.ID)
		if err != nil {
			return rec, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if !claimed {
			existing, _, err := b.tasks.Get(ctx, bound)
			switch {
			case err == nil:
				if existing.Status == task.StatusPending && existing.Attempts == 0 {
					if err := b.enqueue(ctx, existing, enqueueBudget, false); err != nil {
						return rec, false, err
					}
				}
				return existing, false, nil
			case errors.Is(err, taskstore.ErrNotFound):
				rec.ID, accepted.TaskID = bound, bound // the first request died before storing the record
				accepted.ID = task.EventID(bound, accepted.Kind, accepted.Attempt)
				sub.rec, sub.accepted = rec, accepted
			default:
				return rec, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
		}
	}
	// A keyed record is stored only if absent, and in a call of its own: a concurrent
	// request with the same key may store this id's record (it finds the key bound and no
	// record yet), and a shared transaction would overwrite what it stored (Dapr's Redis
	// store does not check first-write inside a transaction). Claiming the key is a call
	// of its own for the same reason: a batch of claims would rebind keys bound already.
	// A large payload is stored by its submission too (with the record, under a key of
	// its own: taskstore.InlinePayloadMax): in the pass's transaction, a few of them made
	// every submission of the pass wait for their megabytes.
	if key != "" || len(rec.Payload) > taskstore.InlinePayloadMax {
		if err := b.tasks.Create(ctx, rec); err != nil {
			if key == "" {
				// Nobody can reach this task (its client is answered 503 and gets no id),
				// yet its write, or its payload's, may land all the same: remove both
				// once the write's own deadline has passed.
				b.settling.Go(func() {
					time.Sleep(b.removeAfter)
					b.remove(context.WithoutCancel(ctx), rec, "stored", err)
				})
			}
			return rec, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		sub.stored = true
	}
	if err := b.submissions.Do(ctx, sub); err != nil {
		// The budget ended before the pass did; the pass goes on, and may store and
		// queue the task all the same: a task it stored but could not queue is settled
		// as below.
		b.settling.Go(func() {
			<-sub.done
			if sub.err == nil && sub.queueErr != nil {
				b.settle(context.WithoutCancel(ctx), rec, accepted, key != "")
			}
		})
		return rec, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if sub.err != nil {
		return rec, false, fmt.Errorf("%w: %w", ErrUnavailable, sub.err)
	}
	if sub.queueErr == nil {
		return rec, true, nil
	}
	// The first try may have got through all the same: the next ones mark the attempt
	// redispatched, so its worker checks the record before computing.
	if err := b.enqueue(ctx, rec, enqueueBudget, true); err != nil {
		// A try that failed may have queued the task all the same (it timed out while the
		// queue took it): removing the record now would leave a queued task without one,
		// which its worker drops, while a retry with the same key re-creates the record
		// but cannot queue the attempt again. So the record stays and queuing goes on in
		// the background until the task is queued or, that failing for good, removed.
		b.settling.Go(func() { b.settle(context.WithoutCancel(ctx), rec, accepted, key != "") })
		return rec, false, err
	}
	b.deferAccepted([]task.Event{accepted})
	return rec, true, nil
}

// Bounds of accepting a task: the whole submission, storing its record (or removing it
// again), each try of queuing it, all tries of queuing, and how many tasks one call of
// the store or the queue takes at most. A
// submission while the queue cannot be reached (placement down, the gateway's sidecar
// gone) fails fast, with a 503 and its Retry-After, instead of holding the client: a
// queue call takes milliseconds when the queue is there.
const (
	submitBudget        = 2 * time.Second // the whole submission, but removing a record not queued
	createTimeout       = time.Second
	enqueueTryTimeout   = time.Second
	enqueueBudget       = 1500 * time.Millisecond
	settleBudget        = 2 * time.Minute  // queuing in the background after a failed submission
	acceptedSendTimeout = 30 * time.Second // publishing (or spooling) a batch of accepted events
	enqueueBatchMax     = 256
)

// SubmitSpacingDefault is the least time between the starts of two submission passes
// that follow one another (Config.SubmitSpacing). A pass costs three sidecar calls
// whatever it carries, and at a steady 500 tasks/s one started as the last ended
// carried about two submissions: spaced 8 ms apart, passes carry about four, which took
// the calls per task from 1.79 to 1.28 and the CPU per task from 3.09 to 2.80 ms
// (docs/benchmarks-history.md, "The eleventh session"). A lone submission, or the first after a quiet spell, goes at once.
const SubmitSpacingDefault = 8 * time.Millisecond

// AcceptedDelayDefault is BackendOptions.AcceptedDelay's default. At 10 tasks/s a task
// is notified within about 15 ms, so its accepted event's publish and deliveries would
// come after it; in alternate tasks of one run at 10/s, a publish 25 ms after the
// acceptance rather than at once brought the median task's SSE write 1.2 ms sooner
// (12.6 → 11.4 ms after its acceptance; docs/benchmarks-history.md, "The fifteenth session"). And a task that
// starts within the delay has its accepted event carried by its start (the feed delivers
// it: AcceptedSeen), so the gateway publishes nothing for it: a second covers a task's
// wait in the queue under load too, where at 50 ms the burst of 10,000 put 1.93 accepted
// events per task on the broker (docs/benchmarks-history.md, "The sixteenth session").
const AcceptedDelayDefault = time.Second

// settle queues a task whose submission failed while queuing it, for up to
// b.settleBudget, then publishes its acceptance. If it cannot, a task without an
// idempotency key has its record removed (no one else can reach it: the user was answered
// 503 and has no id). A task with a key keeps its record, pending: the client's retry
// with the key queues it (see Submit), and may have done so while settle was still
// trying, through this gateway or another; removing the record then would leave the
// queued attempt without one, and its worker would drop a task the retry was told is
// accepted.
func (b *DaprBackend) settle(ctx context.Context, rec task.Record, accepted task.Event, keyed bool) {
	err := b.enqueue(ctx, rec, b.settleBudget, true)
	if err == nil {
		b.logger.InfoContext(ctx, "task queued after its submission was answered 503", "task_id", rec.ID)
		b.deferAccepted([]task.Event{accepted})
		return
	}
	if keyed {
		b.logger.WarnContext(ctx, "task left pending: it could not be queued; a retry with its idempotency key queues it", "task_id", rec.ID, "error", err)
		return
	}
	b.remove(ctx, rec, "queued", err)
}

// remove deletes the record of a task that could not be stored or queued (what says
// which), and its payload when kept apart, because of err.
func (b *DaprBackend) remove(ctx context.Context, rec task.Record, what string, err error) {
	dctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	if derr := b.tasks.Delete(dctx, rec); derr != nil {
		b.logger.ErrorContext(ctx, "could not remove record of a task that was not "+what, "task_id", rec.ID, "error", derr)
		return
	}
	b.logger.WarnContext(ctx, "task removed: it could not be "+what, "task_id", rec.ID, "error", err)
}

// firstAttempt is the assignment of rec's first attempt; redispatched when an earlier try
// of queuing it may have got through.
func firstAttempt(rec task.Record, redispatched bool) task.Assignment {
	return task.Assignment{TaskID: rec.ID, Attempt: 1, Priority: task.PriorityNormal, Enqueued: time.Now().UTC(), Spec: task.SpecOf(rec), Redispatched: redispatched}
}

// enqueue queues rec's first attempt, trying until budget ends. retried says a try before
// this call may have got through.
func (b *DaprBackend) enqueue(ctx context.Context, rec task.Record, budget time.Duration, retried bool) error {
	a := firstAttempt(rec, retried)
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	// A try that timed out may still have queued the task; the repeat then queues it
	// twice, which is harmless: the queue hands an attempt out once.
	tries := 0
	err := retry.Do(ctx, enqueueTryTimeout, func(ctx context.Context) error {
		tries++
		// A repeat may queue a second entry (the try before may have got through): the
		// worker that takes it checks the record before computing.
		a.Redispatched = retried || tries > 1
		return b.enqueues.Do(ctx, a)
	})
	if err != nil {
		return fmt.Errorf("%w: queue task %s: %w", ErrUnavailable, rec.ID, err)
	}
	return nil
}

// Activity reads the recent completions and failures from the analytics app.
func (b *DaprBackend) Activity(ctx context.Context) (recent.Activity, error) {
	a, err := recent.Client{Invoker: b.client}.Get(ctx)
	if err != nil {
		return a, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return a, nil
}

// Get returns the task's record.
func (b *DaprBackend) Get(ctx context.Context, id uuid.UUID) (task.Record, error) {
	rec, _, err := b.tasks.Get(ctx, id)
	switch {
	case errors.Is(err, taskstore.ErrNotFound):
		return rec, fmt.Errorf("task %s: %w", id, ErrNotFound)
	case err != nil:
		return rec, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return rec, nil
}

// Result reads a completed task's stored result from the storekeeper.
func (b *DaprBackend) Result(ctx context.Context, rec task.Record) ([]byte, error) {
	data, err := storekeeper.Client{Invoker: b.client}.Read(ctx, rec.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return data, nil
}

// cancelQueueTimeout bounds telling the queue of a cancel (tries included): the record
// says cancelled already, so a queue that cannot be reached only delays the stop of a
// running attempt (its result is refused), and a waiting one is dropped by its worker.
const cancelQueueTimeout = 2 * time.Second

// Cancel ends the task as cancelled: a conditional write of its record (task.Cancel;
// the ETag makes it atomic against a completion or failure written meanwhile, and the
// loser of the two is refused), then its cancelled event (through the outbox) and the
// queue's cancel (the waiting entry is skipped, a running attempt's node stops it at
// its next sync), both at once. A task cancelled before has its event published again
// and the queue told again (same event id, idempotent cancel), in case the gateway
// that cancelled it died between the steps; it is still answered ErrFinished.
func (b *DaprBackend) Cancel(ctx context.Context, id uuid.UUID) (task.Record, error) {
	var evs []task.Event
	rec, _, err := b.tasks.Update(ctx, id, func(rec *task.Record) error {
		next, e, err := task.Cancel(*rec, time.Now())
		evs = e
		if err != nil {
			return err
		}
		*rec = next
		return nil
	})
	switch {
	case errors.Is(err, taskstore.ErrNotFound):
		return rec, fmt.Errorf("task %s: %w", id, ErrNotFound)
	case err != nil && !errors.Is(err, task.ErrFinished):
		return rec, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if len(evs) == 0 {
		return rec, err // completed or failed: nothing to tell anyone
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if serr := b.events.SendAll(ctx, evs); serr != nil {
			b.logger.ErrorContext(ctx, "could not publish or spool events", "first_event_id", evs[0].ID, "error", serr)
		}
	})
	wg.Go(func() {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelQueueTimeout)
		defer cancel()
		if qerr := retry.Do(qctx, enqueueTryTimeout, func(ctx context.Context) error {
			_, err := b.queue.Cancel(ctx, id)
			return err
		}); qerr != nil {
			b.logger.WarnContext(ctx, "could not tell the queue of a cancel; a running attempt runs on and its result is refused", "task_id", id, "error", qerr)
		}
	})
	wg.Wait()
	return rec, err
}

// snapshotTimeout bounds reading the queue for the overview: it is not retried, the page
// asks again a moment later.
const snapshotTimeout = 2 * time.Second

// QueueSnapshot reads the queue's depth and idle slots from the queue actor.
func (b *DaprBackend) QueueSnapshot(ctx context.Context) (queue.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	s, err := b.queue.Snapshot(ctx)
	if err != nil {
		return s, fmt.Errorf("%w: queue snapshot: %w", ErrUnavailable, err)
	}
	return s, nil
}
