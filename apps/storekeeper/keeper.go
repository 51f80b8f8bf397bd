package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/resultstore"
	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/catalog"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/steps"
)

// MaxBatchBytesDefault bounds one store request: a batch of results with their JSON
// and their files.
const MaxBatchBytesDefault = task.MaxStoreBatchBytes

// storeTimeout bounds storing one batch, once begun, whatever its caller does.
const storeTimeout = time.Minute

// writeConcurrency bounds the result files with binary files written at once (the
// others are written together: resultstore.WriteMany). Concurrent writes share the file
// system's journal commits, so a batch pays for a few fsyncs, not one each.
const writeConcurrency = 32

// Keeper stores results and completes tasks. Workers call it through service
// invocation (POST /results, a task.StoreBatch); the gateway reads results back
// (GET /results/{id}).
type Keeper struct {
	logger    *slog.Logger
	results   *resultstore.Store
	tasks     *taskstore.Store
	pub       events.BatchSender
	maxBody   int64 // bytes of a store request; MaxBatchBytesDefault
	stored    *prometheus.CounterVec
	bytes     prometheus.Counter
	completed *prometheus.CounterVec
}

// NewKeeper returns a Keeper writing under results.
func NewKeeper(logger *slog.Logger, results *resultstore.Store, tasks *taskstore.Store, pub events.BatchSender, reg prometheus.Registerer) *Keeper {
	k := &Keeper{
		logger: logger.With("component", "keeper"), results: results, tasks: tasks, pub: pub, maxBody: MaxBatchBytesDefault,
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_results_stored_total", Help: "Results received, by outcome (written, duplicate, rejected, error).",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskgrid_results_bytes_total", Help: "Bytes of result JSON files written.",
		}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_tasks_completed_total", Help: "Tasks completed (result on disk, task marked completed), by task type.",
		}, []string{"task"}),
	}
	// Series exist from the start, so that rate() sees their first increment.
	for _, t := range catalog.Default().Names() {
		k.completed.WithLabelValues(t)
	}
	reg.MustRegister(k.stored, k.bytes, k.completed)
	return k
}

// Mount adds the storekeeper's routes.
func (k *Keeper) Mount(r chi.Router) {
	r.Post("/results", k.serveStore)
	r.Get("/results/{id}", k.serveRead)
}

// serveStore answers 200 with one outcome per result whatever became of each; 400 only
// when the body is not a batch.
func (k *Keeper) serveStore(w http.ResponseWriter, r *http.Request) {
	var b task.StoreBatch
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, k.maxBody))
	if err == nil {
		err = json.Unmarshal(data, &b)
	}
	if err != nil {
		k.stored.WithLabelValues("rejected").Inc()
		http.Error(w, "decode store batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	// A batch once begun is finished whether or not its caller waits (a worker killed
	// mid-call cancels the request): a record update cut short may land all the same,
	// and its completion event would then never be published, since a later delivery
	// finds the task completed and the node that held it is gone.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
	defer cancel()
	reply := k.Store(ctx, b)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply)
}

// Store stores a batch of results: it writes every result file (first write wins, at
// most writeConcurrency at once), then completes the written tasks with one update of
// their records, then publishes their completions in one send, and answers one outcome
// per result, in order. Each step is idempotent, so a worker may send a result again
// (a retry, or a presumed-dead worker finishing late) and the user still sees one
// result and one completion.
//
// The records are read while the files are written (taskstore.Prefetch), so the read's
// round trip through the sidecar overlaps the files' fsyncs; nothing is changed before
// the files are on disk, and a record changed since the read (a cancel) is found by its
// ETag and updated from its current version.
func (k *Keeper) Store(ctx context.Context, b task.StoreBatch) task.StoreReply {
	items := make([]item, len(b.Results))
	ids := make([]uuid.UUID, 0, len(b.Results))
	seen := make(map[uuid.UUID]bool, len(b.Results))
	for i, req := range b.Results {
		items[i] = item{req: req, out: task.StoreOutcome{TaskID: req.TaskID}, repeatOf: -1}
		if !seen[req.TaskID] {
			seen[req.TaskID] = true
			ids = append(ids, req.TaskID)
		}
	}
	mark := func(step string) {
		for _, id := range ids {
			steps.Mark(id, step)
		}
	}
	mark(steps.Arrived)
	read := make(chan taskstore.Prefetched, 1)
	go func() { read <- k.tasks.Prefetch(ctx, ids) }()
	k.write(ctx, items)
	mark(steps.Written)
	k.complete(ctx, items, <-read)
	mark(steps.Recorded)
	k.publish(ctx, items)
	mark(steps.Published)
	k.logRefusals(ctx, items)
	reply := task.StoreReply{Outcomes: make([]task.StoreOutcome, len(items))}
	for i, it := range items {
		if it.repeatOf >= 0 {
			it.out = items[it.repeatOf].out
		}
		reply.Outcomes[i] = it.out
	}
	return reply
}

// item is one result of a batch on its way through Store.
type item struct {
	req     task.StoreRequest
	out     task.StoreOutcome
	written bool          // the file is on disk (this time or before)
	loc     task.Location // where, once written
	events  []task.Event  // to publish, once the record says completed
	// repeatOf is the item of the same task earlier in the batch whose outcome this
	// one shares (-1: none).
	repeatOf int
	refusal  *refusal // why it goes back to its worker, if it does
}

// recordMayLag reports whether the record of its task may still be on its way at now:
// it carries the start of a first attempt just queued (see task.RecordGrace).
func (it *item) recordMayLag(now time.Time) bool {
	return it.req.Start != nil && it.req.Start.RecordMayLag(now)
}

// write writes the result files: together, with their syncs shared, those the store can
// write so; the others at most writeConcurrency at once (resultstore.WriteMany).
func (k *Keeper) write(ctx context.Context, items []item) {
	rs := make([]resultstore.Result, len(items))
	for i, it := range items {
		rs[i] = resultstore.Result{Dir: it.req.Directory, ID: it.req.TaskID, Data: it.req.Output, Files: it.req.Files}
	}
	for i, w := range k.results.WriteMany(ctx, rs, writeConcurrency) {
		k.written(ctx, &items[i], w)
	}
}

// written takes in what the store did with its result: stored, found, refused or failed.
func (k *Keeper) written(ctx context.Context, it *item, w resultstore.Written) {
	req := it.req
	switch err := w.Err; {
	case errors.Is(err, resultstore.ErrInvalidDirectory), errors.Is(err, resultstore.ErrInvalidFile), errors.Is(err, resultstore.ErrInvalidResult):
		k.stored.WithLabelValues("rejected").Inc()
		k.logger.WarnContext(ctx, "result rejected", "task_id", req.TaskID, "worker", req.Worker, "error", err)
		it.out.Rejected, it.out.Error = true, err.Error()
		return
	case err != nil:
		k.fail(it, "write result", err)
		return
	case w.Existed:
		k.stored.WithLabelValues("duplicate").Inc()
	default:
		k.stored.WithLabelValues("written").Inc()
		k.bytes.Add(float64(w.Loc.Bytes))
	}
	it.written = true
	it.loc = w.Loc
}

// fail gives it an error: the worker sends the result again.
func (k *Keeper) fail(it *item, step string, err error) {
	k.again(it, slog.LevelError, "store failed; the worker will send the result again", step, err)
}

// again gives it an error the worker meets by sending the result again; Store logs it,
// at level with msg, with the others of its kind in the batch (logRefusals).
func (k *Keeper) again(it *item, level slog.Level, msg, step string, err error) {
	k.stored.WithLabelValues("error").Inc()
	it.out.Stored, it.out.Location, it.out.Error = false, nil, step+": "+err.Error()
	it.refusal = &refusal{level: level, msg: msg, step: step, err: err}
}

// refusal is why a result was sent back to its worker, for the log.
type refusal struct {
	level     slog.Level
	msg, step string
	err       error
}

// logRefusals logs the results of a batch sent back to their workers, one line per
// message and step with how many there were and the first one's task, worker and error:
// a full disk refuses every result of every call, and each comes again every 2 s at
// most, so a line per result would flood the log.
func (k *Keeper) logRefusals(ctx context.Context, items []item) {
	type kind struct{ msg, step string }
	count := map[kind]int{}
	var first []*item
	for i := range items {
		r := items[i].refusal
		if r == nil {
			continue
		}
		kd := kind{r.msg, r.step}
		if count[kd] == 0 {
			first = append(first, &items[i])
		}
		count[kd]++
	}
	for _, it := range first {
		r := it.refusal
		k.logger.Log(ctx, r.level, r.msg, "step", r.step, "results", count[kind{r.msg, r.step}], "task_id", it.req.TaskID, "worker", it.req.Worker, "error", r.err)
	}
}

// errRecordNotYet is a result whose task's record is still on its way (see
// item.recordMayLag).
var errRecordNotYet = errors.New("the task's record is not written yet")

// complete marks the tasks of the written results completed, in one update of their
// records. A task listed twice in the batch is completed by its first result; the later
// ones share its outcome (the first file written is the one kept anyway).
func (k *Keeper) complete(ctx context.Context, items []item, read taskstore.Prefetched) {
	first := map[uuid.UUID]int{} // task → its first written item
	var ids []uuid.UUID
	for i := range items {
		if !items[i].written {
			continue
		}
		if f, ok := first[items[i].req.TaskID]; ok {
			items[i].repeatOf = f
			continue
		}
		first[items[i].req.TaskID] = i
		ids = append(ids, items[i].req.TaskID)
	}
	if len(ids) == 0 {
		return
	}
	now := time.Now().UTC()
	// UpdateMany may call fn for several records at once and again for one record on a
	// conflict: each call writes only its own record's item, the last call winning.
	change := func(rec *task.Record) error {
		i, ok := first[rec.ID]
		if !ok {
			return errors.New("record of another task")
		}
		it := &items[i]
		var next task.Record
		var evs []task.Event
		var err error
		if w, werr := task.ParseWorker(it.req.Worker); it.req.Start != nil && werr == nil {
			next, evs, err = task.StartAndComplete(*rec, *it.req.Start, w, it.req.StartedAt, it.loc, now)
		} else {
			next, evs, err = task.Complete(*rec, it.req.Attempt, it.loc, it.req.Worker, now)
		}
		it.events = evs
		if err == nil {
			*rec = next
		}
		return err
	}
	results := k.tasks.UpdateManyRead(ctx, ids, read, change)
	k.awaitRecords(ctx, ids, results, func(id uuid.UUID) bool { return items[first[id]].recordMayLag(time.Now()) }, change)
	for j, id := range ids {
		k.settle(ctx, &items[first[id]], results[j])
	}
}

// awaitRecords reads again, backing off for up to recordWait, the records results did
// not find that mayLag says may still be on their way (the gateway writes a task's record
// while it queues the first attempt: see task.RecordGrace), and applies change to those
// it finds, in place in results. Most such records come within milliseconds; one that
// does not is answered "not stored", and the worker sends its result again later.
func (k *Keeper) awaitRecords(ctx context.Context, ids []uuid.UUID, results []taskstore.Result, mayLag func(uuid.UUID) bool, change func(*task.Record) error) {
	wait, waited := recordWaitFirst, time.Duration(0)
	for waited < recordWait {
		var again []int
		for j, id := range ids {
			if errors.Is(results[j].Err, taskstore.ErrNotFound) && mayLag(id) {
				again = append(again, j)
			}
		}
		if len(again) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		waited += wait
		wait *= 2
		sub := make([]uuid.UUID, len(again))
		for i, j := range again {
			sub[i] = ids[j]
		}
		for i, r := range k.tasks.UpdateMany(ctx, sub, change) {
			results[again[i]] = r
		}
	}
}

// How long a store call waits for records on their way (see awaitRecords): 2, 4, ... 64
// ms, 126 ms in all, so that a node's next call of results (one at a time) is held up
// little when a record is late for longer.
const (
	recordWaitFirst = 2 * time.Millisecond
	recordWait      = 100 * time.Millisecond
)

// settle sets the outcome of a written result from what the update of its record did.
func (k *Keeper) settle(ctx context.Context, it *item, r taskstore.Result) {
	switch {
	case r.Err == nil:
		if r.Changed {
			k.completed.WithLabelValues(r.Record.Type).Inc()
		}
		it.out.Stored, it.out.Location = true, r.Record.Result
	case errors.Is(r.Err, task.ErrNoChange):
		// Completed already (the first result won). Its completion is published again:
		// the step before may have crashed between the update and the publish; the
		// event id is the same, so consumers see one completion.
		it.out.Stored, it.out.Location = true, r.Record.Result
	case errors.Is(r.Err, task.ErrStale):
		// The task ended otherwise first: failed for good, or cancelled by its user (a
		// result that lost the race with a cancel). The result is not reported: no
		// completion, the record keeps no location, GET .../result answers 409. Its file
		// stays on disk (never linked to the task).
		it.events = nil
		k.logger.WarnContext(ctx, "result of a task that has ended otherwise; kept on disk only, not reported", "task_id", it.req.TaskID, "worker", it.req.Worker, "status", r.Record.Status)
		loc := it.loc
		it.out.Stored, it.out.Location = true, &loc
	case errors.Is(r.Err, taskstore.ErrNotFound) && it.recordMayLag(time.Now()):
		// The record of a first attempt just queued is still on its way (the gateway
		// writes it while the attempt is queued and pushed; see task.RecordGrace): the
		// worker sends the result again, and this file is the one kept.
		it.events = nil
		k.again(it, slog.LevelInfo, "result before its task's record; the worker sends it again", "complete task", errRecordNotYet)
	case errors.Is(r.Err, taskstore.ErrNotFound):
		// No record, for good: the task does not exist (its submission failed, or its
		// gateway died before writing it). The worker drops the attempt; the file stays
		// on disk, linked to nothing.
		it.events = nil
		k.logger.WarnContext(ctx, "result of a task that has no record; kept on disk only, not reported", "task_id", it.req.TaskID, "worker", it.req.Worker)
		it.out.Rejected, it.out.Error = true, "no such task"
	default:
		it.events = nil
		k.fail(it, "complete task", r.Err)
	}
}

// publish sends the completions of the batch in one send. If it fails, every result
// whose completion was in it gets an error: its worker sends it again, and the
// completion goes again (ErrNoChange gives it back).
func (k *Keeper) publish(ctx context.Context, items []item) {
	var evs []task.Event
	var with []int
	for i := range items {
		if items[i].out.Stored && len(items[i].events) > 0 {
			with = append(with, i)
			evs = append(evs, items[i].events...)
		}
	}
	if len(evs) == 0 {
		return
	}
	if err := k.pub.SendAll(ctx, evs); err != nil {
		for _, i := range with {
			k.fail(&items[i], "publish completion", err)
		}
	}
}

func (k *Keeper) serveRead(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		http.Error(w, "invalid task id", http.StatusBadRequest)
		return
	}
	rec, _, err := k.tasks.Get(r.Context(), id)
	if errors.Is(err, taskstore.ErrNotFound) {
		http.Error(w, "no such task", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	data, err := k.results.Read(rec.Directory, id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		http.Error(w, "no result", http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	}
}
