package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/batch"
	"github.com/taskgrid/taskgrid/internal/platform/retry"
	"github.com/taskgrid/taskgrid/internal/platform/steps"
)

// run takes attempt a through its life on this node: start (record it running), compute,
// then hand the result to the storekeeper or report the failure. Every step that
// touches a sidecar goes through a batch, so concurrent attempts share calls, and none
// holds the slot up: an assignment that carries its task's spec computes at once, and
// the slot takes its next attempt as soon as the computation is done.
//
// With a spec, the start is recorded once the computation has run for n.startGrace; a
// computation that succeeds sooner (a short task) has its start recorded by the
// storekeeper together with its result, which saves a record write and an event
// publish per task.
func (n *Node) run(a *attempt) {
	// The attempt's attributes go with each line logged, not into a logger made for every
	// attempt: the JSON handler formats a logger's attributes when it is made.
	attrs := func(args ...any) []any {
		return append([]any{"slot", a.slot, "task_id", a.grant.Assignment.TaskID, "attempt", a.grant.Assignment.Attempt}, args...)
	}
	started := make(chan struct{})
	var startErr error
	start := func() {
		defer close(started)
		startErr = n.recordStart(a.ctx, a)
		if startErr == nil {
			n.metrics.started(a.rec.CreatedAt, *a.rec.StartedAt, a.rec.Type)
		}
	}
	// Who records the start: claimStart (the worker, now) or claimMerge (the storekeeper,
	// with the result), whichever claims it first.
	var claim atomic.Int32
	spec := a.grant.Assignment.Spec
	var grace *time.Timer
	var payloadErr error // the payload, stored apart from its record, could not be read
	if spec == nil || a.grant.Assignment.Redispatched || a.grant.Assignment.Attempt > spec.MaxAttempts {
		claim.Store(claimStart)
		// The record has the payload, or the attempt may have run elsewhere, or it is
		// past the task's last attempt (which fails the task): read it first.
		start()
		if startErr != nil {
			n.notStarted(a, startErr)
			return
		}
		spec = task.SpecOf(a.rec)
		if spec == nil {
			spec = &task.Spec{Type: a.rec.Type, Directory: a.rec.Directory, CreatedAt: a.rec.CreatedAt}
			spec.Payload, payloadErr = n.payload(a)
		}
	} else {
		grace = time.AfterFunc(n.startGrace, func() {
			if claim.CompareAndSwap(claimNone, claimStart) {
				start()
			}
		})
		defer grace.Stop()
	}
	// The start event goes out while the task computes; the attempt's end waits for it,
	// so a result never overtakes its start in the outbox.
	published := make(chan struct{})
	go func() {
		defer close(published)
		<-started
		if startErr == nil {
			n.send(a.ctx, a.evs)
		}
	}()

	computing := time.Now().UTC()
	steps.Mark(a.grant.Assignment.TaskID, steps.Computing)
	if payloadErr != nil {
		a.out = Outcome{Failure: FailureUnread, Err: payloadErr}
	} else {
		a.out = n.exec.Execute(a.ctx, spec.Type, spec.Payload, a.grant.Assignment.Attempt, n.reportProgress(a, started))
	}
	if a.cancelled.Load() && a.out.Failure != "" {
		a.out.Failure = FailureCancelled // stopped because its task was cancelled: not a failure
	}
	n.metrics.finished(spec.Type, a.out)
	if a.ctx.Err() != nil {
		if claim.CompareAndSwap(claimNone, claimMerge) { // no start will be recorded
			startErr = a.ctx.Err()
			close(started)
		}
		return // dropped by the queue, or the node stopped: the queue has it (or will)
	}
	a.faulty = n.faults > 0 && rand.Float64() < n.faults
	if a.out.Failure == "" && !a.faulty && claim.CompareAndSwap(claimNone, claimMerge) {
		grace.Stop()
		a.merged = true
		a.rec = task.Record{ID: a.grant.Assignment.TaskID, Type: spec.Type, Directory: spec.Directory, CreatedAt: spec.CreatedAt, StartedAt: &computing}
		n.metrics.started(spec.CreatedAt, computing, spec.Type)
		close(started) // nothing to publish: the storekeeper publishes the start
	} else if claim.CompareAndSwap(claimNone, claimStart) {
		grace.Stop()
		go start() // a failure (or a fault) needs its start recorded first
	}
	if a.faulty {
		<-started
		n.vanish(a)
		n.logger.Warn("fault injection: the worker process dies before storing the result", attrs()...)
		return
	}
	if a.out.Failure == "" {
		// The slot takes its next task while the result is stored, unless the node holds
		// too many results already (holdResult); the attempt stays held (its lease
		// renewed) until the storekeeper has it.
		size := a.out.Result.Size()
		n.mu.Lock()
		vacate := n.holdResult(size)
		if vacate {
			n.vacate(a)
		}
		n.mu.Unlock()
		defer n.dropResult(size)
		if vacate {
			n.fill()
			n.signal()
		}
	}
	<-started
	if startErr != nil {
		n.notStarted(a, startErr) // computed for nothing (a duplicate, or the task moved on)
		return
	}
	<-published
	if a.out.Failure != "" {
		a.reason = a.out.Failure + ": " + a.out.Err.Error()
		n.logger.Info("attempt failed", attrs("failure", a.out.Failure, "error", a.out.Err)...)
		n.fail(a)
		return
	}
	n.mu.Lock()
	a.delivering = true
	n.mu.Unlock()
	n.deliver(a)
}

// payload reads the payload of a's task when its record keeps it apart (a large one),
// trying again for payloadBudget. An attempt whose payload cannot be read fails (its
// start is recorded already), and goes back to the queue as a failed attempt does.
func (n *Node) payload(a *attempt) (json.RawMessage, error) {
	var p json.RawMessage
	ctx, cancel := context.WithTimeout(a.ctx, payloadBudget)
	defer cancel()
	err := retry.Do(ctx, payloadTryTimeout, func(ctx context.Context) error {
		var err error
		p, err = n.svc.Records.Payload(ctx, a.rec)
		if errors.Is(err, taskstore.ErrNotFound) {
			return retry.Permanent(err)
		}
		return err
	})
	return p, err
}

// Bounds of reading a payload (see payload): a large one takes a while to come.
const (
	payloadBudget     = 30 * time.Second
	payloadTryTimeout = 10 * time.Second
)

// Claims of an attempt's start (see run).
const (
	claimNone int32 = iota
	claimStart
	claimMerge
)

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// recordStart records a's start (with the other starts of the moment). A record not found
// for a first attempt queued within task.RecordGrace is taken as still on its way (the
// gateway writes it while the attempt is queued and pushed) and read again, backing off,
// until it is found or the grace is over: then the task does not exist.
func (n *Node) recordStart(ctx context.Context, a *attempt) error {
	wait := recordRetryFirst
	for {
		err := cmpErr(n.starts.Do(ctx, a), a.err)
		if !errors.Is(err, taskstore.ErrNotFound) || !a.grant.Assignment.RecordMayLag(time.Now()) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, recordRetryMax)
	}
}

// How a start whose record is not there yet backs off (see recordStart).
const (
	recordRetryFirst = 2 * time.Millisecond
	recordRetryMax   = 500 * time.Millisecond
)

// notStarted ends an attempt whose start was refused or could not be recorded.
func (n *Node) notStarted(a *attempt, err error) {
	switch {
	case errors.Is(err, task.ErrExhausted):
		n.metrics.failedForGood.Inc()
		n.logger.Warn("task failed for good: its last attempt was lost", "task_id", a.grant.Assignment.TaskID, "error", a.rec.Error)
		n.send(n.ctx, a.evs)
		n.end(a, queue.Done{AttemptID: a.id()})
	case errors.Is(err, task.ErrStale), errors.Is(err, taskstore.ErrNotFound):
		n.logger.Info("dropping assignment that is no longer current", "task_id", a.grant.Assignment.TaskID, "attempt", a.grant.Assignment.Attempt, "reason", err)
		n.end(a, queue.Done{AttemptID: a.id()})
	default:
		// The record could not be written: give the attempt back as it is.
		if n.ctx.Err() == nil {
			n.logger.Warn("could not start attempt; giving it back to the queue", "task_id", a.grant.Assignment.TaskID, "error", err)
		}
		n.end(a, queue.Done{AttemptID: a.id(), Refused: true})
	}
}

// vanish is fault injection: the attempt's "process" dies without a word. The node
// stops reporting the attempt, so the queue finds its lease lost and re-queues it; the
// slot is back a moment later, as after a supervisor's restart.
func (n *Node) vanish(a *attempt) {
	n.metrics.faults.Inc()
	n.mu.Lock()
	n.release(a)
	n.down[a.slot] = time.Now().Add(n.restartAfter)
	n.mu.Unlock()
	a.cancel()
	time.AfterFunc(n.restartAfter, func() { n.fill(); n.signal() })
	n.signal()
}

// startBatch records attempts as running, all in one read and one write of their
// records. Each attempt gets its record and events, or why it cannot start.
func (n *Node) startBatch(ctx context.Context, as []*attempt) error {
	now := time.Now()
	n.changeRecords(ctx, as, func(a *attempt, rec *task.Record) error {
		next, evs, err := task.Start(*rec, a.grant.Assignment, a.worker(n.name), now)
		a.evs = evs
		if err != nil && !errors.Is(err, task.ErrExhausted) {
			return err
		}
		*rec = next
		a.err = err // ErrExhausted: the record is written failed, and the attempt does not run
		return nil
	})
	return nil
}

// changeRecords applies change to the record of each attempt's task, all in one read
// and one write, and leaves each attempt its record as written (or as read) and in
// a.err why it was not changed. Of two attempts of one task in a batch (a duplicate
// entry), the later one is applied and the other refused as stale.
func (n *Node) changeRecords(ctx context.Context, as []*attempt, change func(a *attempt, rec *task.Record) error) {
	byID := map[uuid.UUID]*attempt{}
	var ids []uuid.UUID
	for _, a := range as {
		a.err = nil
		id := a.grant.Assignment.TaskID
		if prev, dup := byID[id]; dup {
			if prev.grant.Assignment.Attempt > a.grant.Assignment.Attempt {
				prev, a = a, prev
			}
			prev.err = task.ErrStale
			byID[id] = a
			continue
		}
		byID[id] = a
		ids = append(ids, id)
	}
	results := n.updateMany(ctx, ids, func(rec *task.Record) error { return change(byID[rec.ID], rec) })
	for i, r := range results {
		a := byID[ids[i]]
		a.rec = r.Record
		if r.Err != nil {
			a.err = r.Err
		}
	}
}

// updateMany runs a batch of record changes, retrying those whose store call failed
// (not those refused by the state machine) within a bound.
func (n *Node) updateMany(ctx context.Context, ids []uuid.UUID, fn func(*task.Record) error) []taskstore.Result {
	results := make([]taskstore.Result, len(ids))
	todo := make([]int, len(ids))
	for i := range todo {
		todo[i] = i
	}
	_ = retry.Do(ctx, callTimeout, func(ctx context.Context) error {
		sub := make([]uuid.UUID, len(todo))
		for j, i := range todo {
			sub[j] = ids[i]
		}
		var again []int
		for j, r := range n.svc.Records.UpdateMany(ctx, sub, fn) {
			results[todo[j]] = r
			if r.Err != nil && !refusal(r.Err) {
				again = append(again, todo[j])
			}
		}
		todo = again
		if len(todo) > 0 {
			return results[todo[0]].Err
		}
		return nil
	})
	return results
}

// refusal reports whether err is a final answer about a record (not a failed call).
func refusal(err error) bool {
	return errors.Is(err, task.ErrStale) || errors.Is(err, task.ErrNoChange) || errors.Is(err, task.ErrExhausted) ||
		errors.Is(err, taskstore.ErrNotFound) || errors.Is(err, taskstore.ErrNoChange)
}

// fail reports a failed attempt: the record goes back to pending at high priority (or
// fails for good) and the queue is told with the next sync.
func (n *Node) fail(a *attempt) {
	err := retry.Do(n.ctx, callTimeout, func(ctx context.Context) error {
		if err := n.fails.Do(ctx, a); err != nil {
			return err
		}
		if a.err != nil && !refusal(a.err) {
			return a.err
		}
		return nil
	})
	if err != nil {
		return // stopping: the attempt's lease expires and the queue re-queues it
	}
	n.send(n.ctx, a.evs)
	switch {
	case a.err != nil && !errors.Is(a.err, task.ErrNoChange):
		n.end(a, queue.Done{AttemptID: a.id()}) // the task moved on
	case a.requeue:
		n.metrics.requeued.Inc()
		n.end(a, queue.Done{AttemptID: a.id(), Requeue: true})
	default:
		n.metrics.failedForGood.Inc()
		n.logger.Warn("task failed for good", "task_id", a.grant.Assignment.TaskID, "error", a.rec.Error)
		n.end(a, queue.Done{AttemptID: a.id()})
	}
}

// failBatch records failed attempts, in one read and one write.
func (n *Node) failBatch(ctx context.Context, as []*attempt) error {
	now := time.Now()
	n.changeRecords(ctx, as, func(a *attempt, rec *task.Record) error {
		next, evs, requeue, err := task.Fail(*rec, a.grant.Assignment, a.reason, now)
		a.evs, a.requeue = evs, requeue
		if err != nil {
			return err
		}
		*rec = next
		return nil
	})
	return nil
}

// startNow records the start of a merged attempt that will not be completed (its result
// was rejected), so that its failure follows a recorded start. It reports whether the
// attempt goes on.
func (n *Node) startNow(a *attempt) bool {
	a.merged = false
	if err := n.recordStart(n.ctx, a); err != nil {
		n.notStarted(a, err)
		return false
	}
	n.send(n.ctx, a.evs)
	return true
}

// errNotStored is a result the storekeeper did not store this time.
var errNotStored = errors.New("result not stored")

// deliver hands a's result to the storekeeper until it is stored (or rejected, which
// fails the attempt, as does a result too large for any store call). A result that
// cannot be stored now is sent again, backing off.
func (n *Node) deliver(a *attempt) {
	if size := storeRequestBytes(a); size > storeRequestMax {
		a.reason = fmt.Sprintf("result too large to store: about %d bytes as sent, at most %d", size, storeRequestMax)
		if a.merged && !n.startNow(a) {
			return
		}
		n.fail(a)
		return
	}
	err := retry.Do(a.ctx, deliverTimeout, func(ctx context.Context) error {
		err := n.deliverOnce(ctx, a)
		if err != nil && a.merged && !n.showStarted(a) {
			return retry.Permanent(err) // the attempt ended (notStarted)
		}
		return err
	})
	switch {
	case err != nil:
		return // stopping, or dropped: the lease expires or was lost
	case a.stored.Rejected:
		a.reason = "result rejected by the storekeeper: " + a.stored.Error
		if a.merged && !n.startNow(a) {
			return
		}
		n.fail(a)
	default:
		n.end(a, queue.Done{AttemptID: a.id()})
	}
}

// deliverOnce sends a's result to the storekeeper once (with the other results of the
// moment), and reports why it was not stored, if it was not.
func (n *Node) deliverOnce(ctx context.Context, a *attempt) error {
	a.stored = nil
	if err := n.deliveries.Do(ctx, a); err != nil {
		return err
	}
	switch {
	case a.stored == nil:
		return fmt.Errorf("%w: no outcome for it in the reply", errNotStored)
	case !a.stored.Stored && !a.stored.Rejected:
		return fmt.Errorf("%w: %s", errNotStored, a.stored.Error)
	}
	return nil
}

// showStarted records the start of a merged attempt (a short task, whose start goes
// with its result) once its result could not be stored at once, so that while the
// result waits (the storekeeper away, a full results disk) the task shows running, not
// pending. A start the record refuses stays with the result, as before. It reports
// whether the attempt goes on.
func (n *Node) showStarted(a *attempt) bool {
	merged, evs := a.rec, a.evs
	// As any start, it waits for the state store: while that is away the storekeeper
	// could not complete the task either.
	err := n.recordStart(a.ctx, a)
	switch {
	case err == nil:
		a.merged = false
		n.send(a.ctx, a.evs)
	case errors.Is(err, task.ErrExhausted): // the record was written failed
		n.notStarted(a, err)
		return false
	default: // refused (the attempt is not current), or the attempt ends: the result
		// keeps carrying its start, and the storekeeper judges it as before
		a.rec, a.evs = merged, evs
	}
	return true
}

// deliverBatch sends results to the storekeeper: in one call, or in as many calls, one
// after another, as it takes to keep each within storeCallBytes. A call that fails
// leaves its results without an outcome (deliver sends them again), and the others keep
// theirs: the batch's error is the first call's when every call failed.
func (n *Node) deliverBatch(ctx context.Context, as []*attempt) error {
	var first error
	answered := false
	batch.Runs(len(as), func(i int) int64 { return storeRequestBytes(as[i]) }, storeCallBytes, func(from, to int) {
		if err := n.deliverCall(ctx, as[from:to]); err == nil {
			answered = true
		} else if first == nil {
			first = err
		}
	})
	if answered {
		return nil
	}
	return first
}

// deliverCall sends results to the storekeeper in one call.
func (n *Node) deliverCall(ctx context.Context, as []*attempt) error {
	reqs := make([]task.StoreRequest, len(as))
	for i, a := range as {
		reqs[i] = storeRequest(a, n.name)
	}
	ctx, cancel := context.WithTimeout(ctx, deliverTimeout)
	defer cancel()
	for _, r := range reqs {
		steps.Mark(r.TaskID, steps.Storing)
	}
	outs, err := n.svc.Results.Store(ctx, reqs)
	if err != nil {
		return err
	}
	for i, a := range as {
		if i < len(outs) && outs[i].TaskID == a.grant.Assignment.TaskID {
			a.stored = &outs[i]
		}
	}
	return nil
}

// storeRequestBytes is about how large a's store request is as JSON: its result's JSON
// as it is, its files in base64, and room for the rest (ids, directory, worker, start).
func storeRequestBytes(a *attempt) int64 {
	n := int64(len(a.out.Result.Output)) + 2<<10
	for _, f := range a.out.Result.Files {
		n += int64(base64.StdEncoding.EncodedLen(len(f.Data))) + 64
	}
	return n
}

// The bytes of the store calls: a call carries results up to storeCallBytes (more go in
// the next call of the batch: each sidecar on the way holds a call in memory a few
// times over, and the storekeeper's takes one from every node at once), and a result
// larger than storeRequestMax alone, which no call can carry (the storekeeper takes
// task.MaxStoreBatchBytes), fails its attempt.
const (
	storeCallBytes  = 16 << 20
	storeRequestMax = task.MaxStoreBatchBytes - 64<<10
)

func storeRequest(a *attempt, node string) task.StoreRequest {
	req := task.StoreRequest{
		TaskID: a.rec.ID, Attempt: a.grant.Assignment.Attempt, Directory: a.rec.Directory,
		Worker: a.worker(node).String(), Output: json.RawMessage(a.out.Result.Output), StartedAt: *a.rec.StartedAt,
		Files: a.out.Result.Files,
	}
	if a.merged {
		start := a.grant.Assignment
		start.Spec = nil // the storekeeper needs the attempt, not the payload
		req.Start = &start
	}
	return req
}

// send publishes events through the outbox; it never holds the attempt up for long.
func (n *Node) send(ctx context.Context, evs []task.Event) {
	if len(evs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := n.svc.Events.SendAll(ctx, evs); err != nil {
		n.logger.Error("could not publish or spool events", "event_id", evs[0].ID, "error", err)
	}
}

// reportProgress returns a progress callback that publishes at most every
// n.progressEvery, once the start is recorded. The end of the work (1) is not published: the completion, which
// follows once the result is stored, says 100 %.
func (n *Node) reportProgress(a *attempt, started <-chan struct{}) func(float64) {
	var last atomic.Int64 // unix nanos of the last publish
	return func(f float64) {
		now := time.Now()
		if f >= 1 || now.UnixNano()-last.Load() < int64(n.progressEvery) {
			return
		}
		select {
		case <-started: // the record (and so the event's fields) is known
		default:
			return
		}
		last.Store(now.UnixNano())
		go n.svc.Progress.Progress(a.ctx, task.Progress(a.rec, f, now))
	}
}
