package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/batch"
)

// Ports: what a worker node needs of the rest of the system, in its own terms. The
// Dapr adapters in internal/adapters implement them (run.go wires them); the unit
// tests use fakes.
type (
	// Queue is the task queue's side of a node's sync.
	Queue interface {
		Sync(ctx context.Context, req queue.SyncRequest) (queue.SyncReply, error)
	}
	// Records reads and changes task records, many at once, and reads a payload stored
	// apart from its record.
	Records interface {
		UpdateMany(ctx context.Context, ids []uuid.UUID, fn func(*task.Record) error) []taskstore.Result
		Payload(ctx context.Context, rec task.Record) (json.RawMessage, error)
	}
	// Results hands results to the storekeeper, many at once; one outcome per result.
	Results interface {
		Store(ctx context.Context, reqs []task.StoreRequest) ([]task.StoreOutcome, error)
	}
	// Events publishes lifecycle events durably (through the outbox).
	Events interface {
		SendAll(ctx context.Context, evs []task.Event) error
	}
	// Progress publishes a progress event, best effort (advisory and soon stale).
	Progress interface {
		Progress(ctx context.Context, e task.Event)
	}
)

// Services bundles the ports of a node.
type Services struct {
	Queue    Queue
	Records  Records
	Results  Results
	Events   Events
	Progress Progress
}

// Node is one worker node: its slots (the "worker processes", each running at most one
// attempt at a time), the attempts it holds, and its sync with the queue.
//
// The queue leases every attempt it hands out. The node syncs (queue.SyncRequest) every
// queue.HeartbeatInterval, and sooner when something changed (at once when it needs
// work, else at the end of its round; see nextSync): one call in flight at a time, so
// everything that happened meanwhile goes in the next call. The sync reports
// the held attempts (which renews their leases), the finished ones, the free slots and
// the room the node has for pushed work, and its reply gives the free slots their next
// attempts; the queue pushes new work to the idle slots and into the room between
// syncs. A node that dies stops syncing and the queue re-queues its leases.
type Node struct {
	logger        *slog.Logger
	name          string
	slots         []string
	incarnation   string
	exec          *Executor
	svc           Services
	metrics       *Metrics
	faults        float64       // share of attempts whose "process" dies (Config.FaultRate)
	progressEvery time.Duration // the most often an attempt publishes progress
	restartAfter  time.Duration // how long a slot whose process died stays down
	startGrace    time.Duration // a computation shorter than this has its start recorded with its result
	syncGap       time.Duration // the least time between two syncs of a busy node (Config.SyncGap)

	ctx    context.Context // attempts run under it; cancelled when the drain time is up
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}

	starts     *batch.Batcher[*attempt]
	fails      *batch.Batcher[*attempt]
	deliveries *batch.Batcher[*attempt]

	// prefetch is how many attempts the node keeps in its buffer beyond its slots at
	// least: a slot that frees starts the next one at once instead of waiting for a
	// sync. 0 turns the buffer off. While tasks are short, the buffer grows to hold
	// about horizon's worth of them at the node's pace (see bufferWant).
	prefetch int
	horizon  time.Duration
	pace     pace
	// backlog: the queue's last reply gave all the work the node asked for (free slots
	// and buffer), so more may wait. The buffer follows the pace only then.
	backlog bool
	// room is what the queue may push to the node's buffer until its next sync (the
	// last reply's Room), roomUsed what it pushed of it since; idle are the node's
	// slots the queue holds idle (the last reply's Idle, less those it pushed to
	// since). While the queue can push to the node, a slot that frees need not ask for
	// work. Guarded by mu, as backlog is.
	room, roomUsed int
	idle           []string
	// syncing: a sync is on its way. The pushes that come meanwhile (midSync) may be of
	// later turns than the sync's, which its reply does not count: they are taken off
	// what the reply says of the room and the idle slots. (A push of an earlier turn
	// comes off twice: the node then asks for work sooner, never later.)
	syncing bool
	midSync []queue.Grant

	// heldResultsMax and heldBytesMax bound the results a node holds computed and not
	// stored yet (see holdResult); heldResults and heldBytes are those it holds, guarded
	// by mu.
	heldResultsMax int
	heldBytesMax   int64
	heldResults    int
	heldBytes      int64

	mu       sync.Mutex
	seen     uint64                      // highest lease number received
	busy     map[string]*attempt         // slot → attempt computing on it
	buffer   []*attempt                  // attempts held for the next free slot, in grant order
	held     map[task.AttemptID]*attempt // attempts held: buffered, computing, or being stored or failed
	done     []queue.Done                // ended attempts not yet reported to the queue
	down     map[string]time.Time        // slot → when its dead "process" is back
	draining bool
}

// attempt is one held attempt.
type attempt struct {
	grant  queue.Grant
	slot   string // the slot it runs on, once it left the buffer
	ctx    context.Context
	cancel context.CancelFunc

	// Set by the batch that handled it.
	rec        task.Record
	evs        []task.Event
	err        error
	requeue    bool               // fail: the task gets another attempt
	out        Outcome            // the computation's outcome
	reason     string             // why it failed
	stored     *task.StoreOutcome // the storekeeper's answer
	dropped    bool               // the queue took it back: say nothing more of it
	cancelled  atomic.Bool        // its task was cancelled by its user (set before ctx is cancelled)
	delivering bool               // its result is computed and on its way (set under Node.mu)
	merged     bool               // its start goes to the storekeeper with its result
	faulty     bool               // fault injection: its "process" dies before storing the result
}

func (a *attempt) id() task.AttemptID { return a.grant.Assignment.ID() }

func (a *attempt) worker(node string) task.Worker { return task.Worker{Node: node, Slot: a.slot} }

// NewNode returns the node name with slots, running task code with exec.
func NewNode(logger *slog.Logger, name string, slots []string, exec *Executor, svc Services, metrics *Metrics) *Node {
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		logger: logger.With("component", "node"), name: name, slots: slots, incarnation: uuid.NewString(),
		exec: exec, svc: svc, metrics: metrics, progressEvery: ProgressIntervalDefault, restartAfter: time.Second,
		startGrace: StartGraceDefault, syncGap: SyncGapDefault,
		heldResultsMax: HeldResultsMaxDefault, heldBytesMax: HeldBytesMaxDefault,
		prefetch: len(slots), horizon: PrefetchHorizonDefault,
		ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
		busy: map[string]*attempt{}, held: map[task.AttemptID]*attempt{}, down: map[string]time.Time{},
	}
	n.starts = batch.New(ctx, batchMax, n.startBatch)
	n.fails = batch.New(ctx, batchMax, n.failBatch)
	n.deliveries = batch.New(ctx, batchMax, n.deliverBatch)
	return n
}

// Bounds of the node's calls.
const (
	// PrefetchHorizonDefault is how much work, at the node's pace, its buffer holds at
	// most when that is more than Config.Prefetch attempts.
	PrefetchHorizonDefault = 250 * time.Millisecond
	// StartGraceDefault is how long a task with a spec computes before the worker
	// records its start; a shorter one has its start recorded with its result.
	StartGraceDefault = 5 * time.Millisecond
	// HeldResultsMaxDefault and HeldBytesMaxDefault bound the results a node holds
	// computed and not stored yet before its slots wait with theirs (see holdResult):
	// a storekeeper call carries up to batchMax results, and under load a node holds
	// a few dozen at most.
	HeldResultsMaxDefault = batchMax
	HeldBytesMaxDefault   = 64 << 20
	// ProgressIntervalDefault is the most often a running attempt publishes progress.
	ProgressIntervalDefault = 250 * time.Millisecond
	// syncTimeout bounds one sync: a sync that takes longer than the lease TTL would
	// let the queue take the node for dead anyway.
	syncTimeout = queue.LeaseTTL
	// callTimeout bounds one try of a record or storekeeper call.
	callTimeout = 5 * time.Second
	// deliverTimeout bounds one hand-off of results (they can be large and are fsynced).
	deliverTimeout = time.Minute
	// batchMax bounds how many attempts one record, storekeeper or event call carries.
	batchMax = 256
)

// Busy is the number of slots computing.
func (n *Node) Busy() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.busy)
}

// Pushed takes grants pushed by the queue (see Take); those for the node's buffer use
// up the room the queue holds for it, those for a slot take the slot off the idle ones.
func (n *Node) Pushed(grants []queue.Grant) (refused []task.AttemptID) {
	n.mu.Lock()
	for _, g := range grants {
		n.usePush(g)
	}
	if n.syncing {
		n.midSync = append(n.midSync, grants...)
	}
	n.mu.Unlock()
	return n.Take(grants)
}

// usePush counts a pushed grant against what the queue holds for the node: the room,
// or the idle slot it names. Call with mu held.
func (n *Node) usePush(g queue.Grant) {
	if g.Slot == "" {
		n.roomUsed++
		return
	}
	n.idle = slices.DeleteFunc(n.idle, func(s string) bool { return s == g.Slot })
}

// Take takes grants pushed by the queue or given in a sync reply and starts them: on
// the slot a grant names when it is free, else on any free slot, else from the buffer
// once a slot frees. It returns the attempts it refused (node draining; a push for a
// slot of another node; a push with no slot free and the buffer full) and reports them
// with the next sync, which puts them back at the head of the queue (for a push, the
// queue may also learn it from the push's reply: whichever comes first counts). The
// refusals are recorded under the same lock that records the grants' lease numbers as
// seen: a sync that says the node has seen a lease it does not hold and did not refuse
// makes the queue take the lease for lost, and its task runs again as a new attempt. A
// grant of an attempt held already is taken again, silently.
func (n *Node) Take(grants []queue.Grant) (refused []task.AttemptID) {
	n.mu.Lock()
	now := time.Now()
	var start []*attempt
	for _, g := range grants {
		n.seen = max(n.seen, g.Seq)
		id := g.Assignment.ID()
		if _, dup := n.held[id]; dup {
			continue
		}
		mine := g.Slot == "" || slices.Contains(n.slots, g.Slot)
		slot := ""
		if mine && g.Slot != "" && n.slotFree(g.Slot, now) {
			slot = g.Slot
		} else if mine && len(n.buffer) == 0 {
			slot = n.freeSlot(now)
		}
		if n.draining || !mine || slot == "" && g.Slot != "" && len(n.buffer) >= n.bufferWant(now) {
			refused = append(refused, id)
			continue
		}
		ctx, cancel := context.WithCancel(n.ctx)
		a := &attempt{grant: g, ctx: ctx, cancel: cancel}
		n.held[id] = a
		if slot == "" {
			n.buffer = append(n.buffer, a)
			continue
		}
		a.slot, n.busy[slot] = slot, a
		start = append(start, a)
	}
	for _, id := range refused {
		n.done = append(n.done, queue.Done{AttemptID: id, Refused: true})
	}
	n.mu.Unlock()
	n.launch(start)
	if len(refused) > 0 {
		n.signal()
	}
	return refused
}

// bufferWant is how many attempts the node wants in its buffer now: prefetch, or, while
// work waits in the queue (its last sync got all it asked for) and attempts start
// faster, as many as start in horizon at the node's recent pace (at most BufferMax).
// Without a backlog a larger buffer brings nothing to batch, and measured worse: at
// 50 tasks/s, submit → started went from 6 to 31 ms at p50. Short tasks thus come in larger batches (fewer syncs,
// fewer and larger record, result and event calls), while a task re-queued at high
// priority still waits behind at most about horizon of work on each node. Call with mu
// held.
func (n *Node) bufferWant(now time.Time) int {
	if n.prefetch == 0 || n.horizon <= 0 || !n.backlog {
		return n.prefetch
	}
	want := int(n.pace.rate(now) * n.horizon.Seconds())
	return max(n.prefetch, min(want, BufferMax))
}

// BufferMax bounds the buffer that follows the pace: a node's leases are one key of the
// queue's state, written at every sync that changes them, so a larger buffer makes every
// turn of the queue longer (under overload, long enough to hold submissions past their
// budget) for little more batching.
const BufferMax = 64

// pace is how many attempts a second a node started over its last full window of
// paceWindow (a window runs until the first start after its end, so a quiet spell
// counts as one long, slow window).
type pace struct {
	start time.Time // of the current window
	count int       // attempts started in it
	last  float64   // attempts a second in the last full window
}

const paceWindow = 250 * time.Millisecond

func (p *pace) add(now time.Time, n int) {
	p.roll(now)
	p.count += n
}

func (p *pace) roll(now time.Time) {
	if elapsed := now.Sub(p.start); elapsed >= paceWindow {
		p.last = float64(p.count) / elapsed.Seconds()
		p.start, p.count = now, 0
	}
}

func (p *pace) rate(now time.Time) float64 {
	p.roll(now)
	return p.last
}

// slotFree reports whether slot can take an attempt now: it computes nothing and its
// "process" is not down. Call with mu held.
func (n *Node) slotFree(slot string, now time.Time) bool {
	return n.busy[slot] == nil && !now.Before(n.down[slot])
}

// freeSlot returns a slot that can take an attempt now, or "". Call with mu held.
func (n *Node) freeSlot(now time.Time) string {
	for _, s := range n.slots {
		if n.slotFree(s, now) {
			return s
		}
	}
	return ""
}

// fill starts buffered attempts on the free slots.
func (n *Node) fill() {
	n.mu.Lock()
	now := time.Now()
	var start []*attempt
	for len(n.buffer) > 0 {
		slot := n.freeSlot(now)
		if slot == "" {
			break
		}
		a := n.buffer[0]
		n.buffer = n.buffer[1:]
		a.slot, n.busy[slot] = slot, a
		start = append(start, a)
	}
	n.mu.Unlock()
	n.launch(start)
}

func (n *Node) launch(as []*attempt) {
	n.mu.Lock()
	n.pace.add(time.Now(), len(as))
	n.mu.Unlock()
	for _, a := range as {
		n.wg.Go(func() { n.run(a) })
	}
}

// end forgets attempt a and reports d to the queue with the next sync.
func (n *Node) end(a *attempt, d queue.Done) {
	n.mu.Lock()
	dropped := a.dropped
	n.release(a)
	if !dropped {
		n.done = append(n.done, d)
	}
	n.mu.Unlock()
	a.cancel()
	n.fill()
	n.signal()
}

// release forgets a and frees its slot. Call with mu held (then fill).
func (n *Node) release(a *attempt) {
	delete(n.held, a.id())
	n.buffer = slices.DeleteFunc(n.buffer, func(b *attempt) bool { return b == a })
	n.vacate(a)
}

// holdResult counts a result of size bytes as held, computed and not stored yet, and
// reports whether its slot may take the next task while it is stored: only while the
// node holds fewer than heldResultsMax results and heldBytesMax bytes with it. Past
// that (the storekeeper away, or its disk full) the slot waits with its result, so that
// the queue backs up instead of the node's memory, and a storekeeper that comes back
// finds a node's worth of results, not the queue's. Call with mu held; dropResult when
// the result is stored or given up.
func (n *Node) holdResult(size int64) (vacate bool) {
	vacate = n.heldResults < n.heldResultsMax && n.heldBytes+size <= n.heldBytesMax
	n.heldResults++
	n.heldBytes += size
	return vacate
}

// dropResult is the end of a result counted by holdResult.
func (n *Node) dropResult(size int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.heldResults--
	n.heldBytes -= size
}

// HeldResults is how many results the node holds computed and not stored yet, and
// their bytes.
func (n *Node) HeldResults() (int, int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.heldResults, n.heldBytes
}

// vacate frees a's slot if a still computes on it. Call with mu held (then fill).
func (n *Node) vacate(a *attempt) {
	if a.slot != "" && n.busy[a.slot] == a {
		delete(n.busy, a.slot)
	}
}

// signal makes the sync loop sync now.
func (n *Node) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run syncs with the queue until ctx ends: every queue.HeartbeatInterval, and sooner
// when something changed (see nextSync).
func (n *Node) Run(ctx context.Context) {
	heartbeat := time.NewTicker(queue.HeartbeatInterval)
	defer heartbeat.Stop()
	for {
		if err := n.syncOnce(ctx); err != nil && ctx.Err() == nil {
			n.logger.DebugContext(ctx, "sync with the queue failed; next heartbeat tries again", "error", err)
		}
		if !n.nextSync(ctx, time.Now(), heartbeat.C) {
			return
		}
	}
}

// nextSync waits for the time of the sync after the one at last; false when ctx ended
// first. The next heartbeat is the latest; a change brings it forward:
//
//   - A node that needs work (see needsWork) syncs at once: its slots would idle while
//     work may wait, or the queue must learn of an attempt it takes back.
//   - A busy node, one with as many ended attempts to report as it has slots, syncs
//     syncGap after its last sync, whatever happens meanwhile (see holdWhileBusy).
//   - Other changes ride the heartbeat: a few attempts' ends, or a slot free while the
//     queue holds other slots or room of the node to push work to. At light load a
//     task's slot and its end thus cost no sync, each a turn of the queue actor and an
//     actor state transaction that would run beside the next tasks' calls (at 10
//     tasks/s they were about 2.4 a task; docs/benchmarks-history.md, "The fourteenth session of
//     2026-12-07"). What rides is only the leases of ended attempts, held at most a
//     heartbeat longer.
func (n *Node) nextSync(ctx context.Context, last time.Time, heartbeat <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-heartbeat:
			return true
		case <-n.wake:
		}
		if n.syncGap <= 0 || n.needsWork() {
			return true
		}
		if n.roundDue() {
			n.holdWhileBusy(ctx, last)
			return ctx.Err() == nil
		}
	}
}

// holdWhileBusy holds the sync after the one at last until syncGap after it: under load
// a node works in rounds, and one sync (one turn of the queue actor, one state
// transaction) reports and takes a round's work. The rounds are what make a node's
// batches large all the way down (starts, results, events), and what takes most of the
// CPU per task off under load (docs/benchmarks-history.md, "The ninth session of 2026-12-06"); their price
// is that work submitted meanwhile waits for the round. One thing ends the wait early:
// the node's slots run dry (see dry), so the rounds never leave slots idle with work
// waiting in the queue, whatever the pace.
func (n *Node) holdWhileBusy(ctx context.Context, last time.Time) {
	timer := time.NewTimer(time.Until(last.Add(n.syncGap)))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		case <-n.wake:
			n.mu.Lock()
			dry := n.draining || n.dry(time.Now())
			n.mu.Unlock()
			if dry {
				return
			}
		}
	}
}

// SyncGapDefault is the least time between two syncs of a busy node (Config.SyncGap).
const SyncGapDefault = 100 * time.Millisecond

// StoreSpacingDefault is the least time between the starts of two calls of results to
// the storekeeper that follow one another (Config.StoreSpacing). Work pushed into a
// node's room comes in a turn of the queue's at a time, and so do its results: without
// the spacing, at 500 tasks/s a call carried a few of them, and the storekeeper's calls
// per task doubled (docs/benchmarks-history.md, "The twelfth session of 2026-12-07").
const StoreSpacingDefault = 30 * time.Millisecond

// roundDue reports whether the node has a round's worth of ended attempts to report: as
// many as it has slots. Every turn of the queue that hands the node work writes its
// leases, those of its ended attempts too until it reports them, so under load they
// go in rounds of syncGap rather than at heartbeats.
func (n *Node) roundDue() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.done) >= len(n.slots)
}

// dry reports whether a slot is free with nothing buffered for it while work may wait
// in the queue: the last reply gave all the node asked for, or the queue holds neither
// an idle slot of the node's nor room for it, so it would push it nothing. Call with
// mu held.
func (n *Node) dry(now time.Time) bool {
	return len(n.buffer) == 0 && n.freeSlot(now) != "" && (n.backlog || len(n.idle) == 0 && n.roomLeft() <= 0)
}

// needsWork reports whether the node should sync at once: it drains, or gives an
// attempt back (refused, or to run again at high priority), and the queue must learn it
// at once; its slots run dry (see dry); or, while work waits in the queue, its buffer
// and the room the queue holds for it are below half of what it wants.
func (n *Node) needsWork() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if n.draining || n.dry(now) || slices.ContainsFunc(n.done, func(d queue.Done) bool { return d.Refused || d.Requeue }) {
		return true
	}
	return n.backlog && len(n.buffer)+n.roomLeft() < n.bufferWant(now)/2
}

// request is the node's sync as of now; the sync is on its way from here.
func (n *Node) request() (queue.SyncRequest, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.syncing = true
	req := queue.SyncRequest{
		Node: n.name, Incarnation: n.incarnation, Seen: n.seen, Draining: n.draining,
		Held: slices.Collect(maps.Keys(n.held)),
		Done: slices.Clone(n.done),
	}
	now := time.Now()
	if !n.draining {
		// Slots are free only while the buffer is empty: fill gives it to them first.
		for _, s := range n.slots {
			if len(n.buffer) == 0 && n.slotFree(s, now) {
				req.Free = append(req.Free, s)
			}
		}
		req.Prefetch = max(0, n.bufferWant(now)-len(n.buffer))
		req.Room = max(0, n.roomWant(now)-len(n.buffer))
	}
	return req, len(n.done)
}

// roomWant is how many attempts beyond its free slots the node takes pushed between two
// syncs: as many as it started in two sync gaps at its recent pace (at most BufferMax),
// so that at a steady pace work reaches it as it arrives rather than at its next sync,
// and tasks that run long get none pushed past their slots. None without a buffer.
func (n *Node) roomWant(now time.Time) int {
	if n.prefetch == 0 {
		return 0
	}
	return min(int(n.pace.rate(now)*2*n.syncGap.Seconds()), BufferMax)
}

// roomLeft is the room the queue still holds for the node. Call with mu held.
func (n *Node) roomLeft() int { return n.room - n.roomUsed }

// syncOnce sends one sync and acts on its reply.
func (n *Node) syncOnce(ctx context.Context) error {
	req, sent := n.request()
	cctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	reply, err := n.svc.Queue.Sync(cctx, req)
	n.mu.Lock()
	mid := n.midSync
	n.syncing, n.midSync = false, nil
	if err != nil {
		n.mu.Unlock()
		return err // the ended attempts stay pending and go with the next sync
	}
	ask := max(req.Prefetch, req.Room)
	n.backlog = ask > 0 && len(reply.Given) >= len(req.Free)+ask
	n.room, n.roomUsed, n.idle = reply.Room, 0, reply.Idle
	for _, g := range mid {
		n.usePush(g)
	}
	n.done = n.done[sent:]
	var stop []*attempt
	for _, id := range reply.Drop {
		if a, ok := n.held[id]; ok {
			a.dropped = true
			n.release(a)
			if !a.delivering {
				stop = append(stop, a)
			}
			// A result computed already still goes to the storekeeper: the first result
			// stored wins, and this one may well be the first.
		}
	}
	// A cancelled task: its computation is cancelled and its slot freed at once; its
	// outcome is neither a failure nor a result (a result on its way is refused by the
	// record, which says cancelled).
	var cancelled []*attempt
	for _, id := range reply.Cancel {
		if a, ok := n.held[id]; ok {
			a.cancelled.Store(true)
			a.dropped = true
			n.release(a)
			cancelled = append(cancelled, a)
		}
	}
	n.mu.Unlock()
	for _, a := range stop {
		n.logger.WarnContext(ctx, "the queue took back an attempt this node held (it was taken for lost)", "task_id", a.grant.Assignment.TaskID, "attempt", a.grant.Assignment.Attempt)
		a.cancel()
	}
	for _, a := range cancelled {
		n.logger.InfoContext(ctx, "attempt cancelled: its task was cancelled", "task_id", a.grant.Assignment.TaskID, "attempt", a.grant.Assignment.Attempt)
		a.cancel()
	}
	n.fill()
	n.Take(reply.Given)
	return nil
}

// Drain stops taking attempts (the next sync tells the queue) and waits for the held
// attempts until ctx ends; those left are given back to the queue, to run elsewhere.
// Keep the sync loop running meanwhile, then call Stop.
func (n *Node) Drain(ctx context.Context) {
	n.mu.Lock()
	n.draining = true
	for _, a := range n.buffer {
		delete(n.held, a.id())
		n.done = append(n.done, queue.Done{AttemptID: a.id(), Refused: true})
	}
	n.buffer = nil
	n.mu.Unlock()
	n.signal()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	n.mu.Lock()
	left := slices.Collect(maps.Values(n.held))
	for _, a := range left {
		n.release(a)
		n.done = append(n.done, queue.Done{AttemptID: a.id(), Requeue: true})
	}
	n.mu.Unlock()
	n.logger.WarnContext(ctx, "drain time is up; giving running attempts back to the queue", "attempts", len(left))
	n.cancel()
}

// Stop reports the last ended attempts to the queue (after the sync loop ended) and
// stops everything still running.
func (n *Node) Stop(ctx context.Context) {
	defer n.cancel()
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if err := n.syncOnce(sctx); err != nil {
		n.logger.WarnContext(sctx, "could not report the drain to the queue; its leases expire instead", "error", err)
	}
}
