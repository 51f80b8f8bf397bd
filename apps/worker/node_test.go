package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/catalog"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/testharness/contract"
)

// Fakes of the node's ports: pure logic, in memory.

type fakeRecords struct {
	mu    sync.Mutex
	recs  map[uuid.UUID]task.Record
	down  int // the next calls fail
	calls int

	payloads     map[string]json.RawMessage // stored apart from their records (apart)
	payloadDown  int                        // the next Payload calls fail
	payloadCalls int
}

// apart moves every record's payload into a key of its own, as the store does with a
// large one; lost leaves the key out.
func (f *fakeRecords) apart(lost bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.payloads == nil {
		f.payloads = map[string]json.RawMessage{}
	}
	for id, rec := range f.recs {
		rec.PayloadKey = "payload-" + id.String()
		if !lost {
			f.payloads[rec.PayloadKey] = rec.Payload
		}
		rec.Payload = nil
		f.recs[id] = rec
	}
}

func (f *fakeRecords) Payload(_ context.Context, rec task.Record) (json.RawMessage, error) {
	if rec.PayloadKey == "" {
		return rec.Payload, nil
	}
	time.Sleep(time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.payloadCalls++
	if f.payloadDown > 0 {
		f.payloadDown--
		return nil, errors.New("state store down")
	}
	p, ok := f.payloads[rec.PayloadKey]
	if !ok {
		return nil, taskstore.ErrNotFound
	}
	return p, nil
}

func (f *fakeRecords) UpdateMany(_ context.Context, ids []uuid.UUID, fn func(*task.Record) error) []taskstore.Result {
	time.Sleep(time.Millisecond) // a sidecar call takes time (fake time under synctest)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := make([]taskstore.Result, len(ids))
	for i, id := range ids {
		if f.down > 0 {
			out[i].Err = errors.New("state store down")
			continue
		}
		rec, ok := f.recs[id]
		if !ok {
			out[i].Err = taskstore.ErrNotFound
			continue
		}
		next := rec
		if err := fn(&next); err != nil {
			out[i] = taskstore.Result{Record: rec, Err: err}
			continue
		}
		f.recs[id] = next
		out[i] = taskstore.Result{Record: next, Changed: true}
	}
	if f.down > 0 {
		f.down--
	}
	return out
}

func (f *fakeRecords) get(id uuid.UUID) task.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recs[id]
}

type fakeResults struct {
	mu        sync.Mutex
	stored    map[uuid.UUID]int
	withStart map[uuid.UUID]int // results that carried their start (a short task)
	reject    bool
	fail      int // the next calls fail
	failAt    int // the call of this number (1 the first, counted from the last reset of sizes) fails
	calls     int
	at        []time.Time // when each call started
	sizes     []int       // results in each call
}

func (f *fakeResults) Store(_ context.Context, reqs []task.StoreRequest) ([]task.StoreOutcome, error) {
	start := time.Now()
	time.Sleep(time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.at, f.sizes = append(f.at, start), append(f.sizes, len(reqs))
	if f.fail > 0 {
		f.fail--
		return nil, errors.New("storekeeper unreachable")
	}
	if f.failAt > 0 && len(f.sizes) == f.failAt {
		return nil, errors.New("storekeeper unreachable")
	}
	var outs []task.StoreOutcome
	for _, r := range reqs {
		o := task.StoreOutcome{TaskID: r.TaskID}
		if f.reject {
			o.Rejected, o.Error = true, "bad directory"
		} else {
			o.Stored = true
			f.stored[r.TaskID]++
			if r.Start != nil {
				f.withStart[r.TaskID]++
			}
		}
		outs = append(outs, o)
	}
	return outs, nil
}

type fakeEvents struct {
	mu   sync.Mutex
	evs  []task.Event
	sent int // SendAll calls
}

func (f *fakeEvents) SendAll(_ context.Context, evs []task.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent++
	f.evs = append(f.evs, evs...)
	return nil
}

func (f *fakeEvents) Progress(context.Context, task.Event) {}

func (f *fakeEvents) kinds(id uuid.UUID) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.evs {
		if e.TaskID == id {
			out = append(out, e.Kind)
		}
	}
	return out
}

type fakeQueue struct {
	mu    sync.Mutex
	reqs  []queue.SyncRequest
	at    []time.Time // when each sync came
	reply queue.SyncReply
	err   error
	// during, when set, runs while a sync is on its way (after the queue's turn).
	during func()
}

func (f *fakeQueue) Sync(_ context.Context, req queue.SyncRequest) (queue.SyncReply, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.at = append(f.at, time.Now())
	r, err, during := f.reply, f.err, f.during
	f.reply, f.during = queue.SyncReply{}, nil
	f.mu.Unlock()
	if during != nil {
		during()
	}
	return r, err
}

type nodeEnv struct {
	node    *Node
	records *fakeRecords
	results *fakeResults
	events  *fakeEvents
	queue   *fakeQueue
	seq     uint64
	reg     *prometheus.Registry
}

// computed is how many attempts of typ the task code finished (the worker's own count).
func (e *nodeEnv) computed(t *testing.T, typ string) int {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if f.GetName() != "taskgrid_worker_attempts_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "task" && l.GetValue() == typ {
					n += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return n
}

func newNodeEnv(t *testing.T, slots ...string) *nodeEnv {
	t.Helper()
	e := &nodeEnv{
		records: &fakeRecords{recs: map[uuid.UUID]task.Record{}},
		results: &fakeResults{stored: map[uuid.UUID]int{}, withStart: map[uuid.UUID]int{}},
		events:  &fakeEvents{},
		queue:   &fakeQueue{},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := Services{Queue: e.queue, Records: e.records, Results: e.results, Events: e.events, Progress: e.events}
	var n *Node
	e.reg = prometheus.NewRegistry()
	metrics := NewMetrics(e.reg, len(slots), func() int { return n.Busy() }, func() (int, int64) { return n.HeldResults() })
	n = NewNode(logger, "vm", slots, &Executor{Catalog: catalog.Default()}, svc, metrics)
	e.node = n
	return e
}

// close stops the node and lets everything it started end, inside the bubble.
func (e *nodeEnv) close() {
	e.node.cancel()
	e.node.wg.Wait()
	time.Sleep(time.Minute) // fake time: batch calls in flight return
}

// submit stores an accepted task of typ with payload and returns its first grant to slot.
func (e *nodeEnv) submit(typ, payload, slot string) queue.Grant {
	rec, _ := task.Accept(task.Record{ID: uuid.New(), Type: typ, Payload: json.RawMessage(payload), Directory: "d", MaxAttempts: 2}, time.Now())
	e.records.recs[rec.ID] = rec
	g := e.grant(rec.ID, 1, slot)
	g.Assignment.Spec = task.SpecOf(rec)
	return g
}

func (e *nodeEnv) grant(id uuid.UUID, attempt int, slot string) queue.Grant {
	e.seq++
	return queue.Grant{Slot: slot, Seq: e.seq, Assignment: task.Assignment{TaskID: id, Attempt: attempt, Priority: task.PriorityNormal, Enqueued: time.Now()}}
}

// runFor runs the node's sync loop for d (fake time) and returns when each sync came,
// from the start.
func (e *nodeEnv) runFor(d time.Duration) []time.Duration {
	start := time.Now()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.node.Run(ctx) }()
	time.Sleep(d)
	stop()
	<-done
	e.queue.mu.Lock()
	defer e.queue.mu.Unlock()
	var at []time.Duration
	for _, t := range e.queue.at {
		at = append(at, t.Sub(start))
	}
	return at
}

// lastSync syncs once and returns what the node reported.
func (e *nodeEnv) lastSync(t *testing.T) queue.SyncRequest {
	t.Helper()
	if err := e.node.syncOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.queue.mu.Lock()
	defer e.queue.mu.Unlock()
	return e.queue.reqs[len(e.queue.reqs)-1]
}

func TestAttemptLife(t *testing.T) {
	tests := []struct {
		name          string
		typ           string
		payload       string
		attempts      int // the record's attempts before the grant
		grant         int // the attempt granted
		setup         func(e *nodeEnv)
		noSpec        bool         // the grant carries no spec: the record is read first
		redispatch    bool         // the grant is marked Redispatched
		computed      int          // how many times the task code ran (-1: not checked)
		wantDone      []queue.Done // relative: TaskID filled in
		wantStatus    task.Status
		wantKinds     []string
		wantStored    int
		wantWithStart int // results that carried their start
		wantRecords   int // UpdateMany calls
	}{
		{name: "short success: start and result go to the storekeeper together", typ: "noop", payload: `{}`, grant: 1,
			wantDone: []queue.Done{{}}, wantStatus: task.StatusPending, wantStored: 1, wantWithStart: 1, wantRecords: 0, computed: -1},
		{name: "long success: started by the worker, stored, done", typ: "sleep", payload: `{"ms":10}`, grant: 1,
			wantDone: []queue.Done{{}}, wantStatus: task.StatusRunning, wantKinds: []string{task.EventAccepted, task.EventStarted}, wantStored: 1, wantRecords: 1},
		{name: "failure with attempts left: pending high, re-queued", typ: "noop", payload: `{"forceFailure":1}`, grant: 1,
			wantDone: []queue.Done{{Requeue: true}}, wantStatus: task.StatusPending, wantKinds: []string{task.EventAccepted, task.EventStarted, task.EventAttemptFailed}, wantRecords: 2},
		{name: "failure of the last attempt: failed for good", typ: "noop", payload: `{"forceFailure":5}`, attempts: 1, grant: 2,
			wantDone: []queue.Done{{}}, wantStatus: task.StatusFailed, wantKinds: []string{task.EventStarted, task.EventAttemptFailed, task.EventFailed}, wantRecords: 2},
		{name: "duplicate dispatch without spec: dropped without running", typ: "noop", payload: `{}`, attempts: 1, grant: 1, noSpec: true,
			wantDone: []queue.Done{{}}, wantStatus: task.StatusPending, wantRecords: 1},
		{name: "duplicate dispatch with spec, long: computed, result dropped", typ: "sleep", payload: `{"ms":10}`, attempts: 1, grant: 1, computed: 1,
			wantDone: []queue.Done{{}}, wantStatus: task.StatusPending, wantRecords: 1},
		{name: "re-dispatched after an uncertain push: the record is read first, not run twice", typ: "noop", payload: `{}`, attempts: 1, grant: 1, redispatch: true,
			wantDone: []queue.Done{{}}, wantStatus: task.StatusPending, wantRecords: 1},
		{name: "no spec: the record is read first", typ: "noop", payload: `{}`, grant: 1, noSpec: true,
			wantDone: []queue.Done{{}}, wantStatus: task.StatusRunning, wantKinds: []string{task.EventAccepted, task.EventStarted}, wantStored: 1, wantRecords: 1},
		{name: "payload kept apart from the record: read, then computed", typ: "sleep", payload: `{"ms":10}`, grant: 1, noSpec: true, setup: func(e *nodeEnv) { e.records.apart(false) },
			wantDone: []queue.Done{{}}, wantStatus: task.StatusRunning, wantKinds: []string{task.EventAccepted, task.EventStarted}, wantStored: 1, wantRecords: 1},
		{name: "payload kept apart, state store down a while: read again", typ: "sleep", payload: `{"ms":10}`, grant: 1, noSpec: true, setup: func(e *nodeEnv) { e.records.apart(false); e.records.payloadDown = 2 },
			wantDone: []queue.Done{{}}, wantStatus: task.StatusRunning, wantKinds: []string{task.EventAccepted, task.EventStarted}, wantStored: 1, wantRecords: 1},
		{name: "payload kept apart and lost: the attempt fails, re-queued", typ: "sleep", payload: `{"ms":10}`, grant: 1, noSpec: true, setup: func(e *nodeEnv) { e.records.apart(true) },
			wantDone: []queue.Done{{Requeue: true}}, wantStatus: task.StatusPending, wantKinds: []string{task.EventAccepted, task.EventStarted, task.EventAttemptFailed}, wantRecords: 2},
		{name: "past the last attempt: failed for good without running", typ: "noop", payload: `{}`, attempts: 2, grant: 3,
			wantDone: []queue.Done{{}}, wantStatus: task.StatusFailed, wantKinds: []string{task.EventFailed}, wantRecords: 1},
		{name: "short result rejected: its start is recorded, then the attempt fails", typ: "noop", payload: `{}`, grant: 1, setup: func(e *nodeEnv) { e.results.reject = true },
			wantDone: []queue.Done{{Requeue: true}}, wantStatus: task.StatusPending, wantKinds: []string{task.EventAccepted, task.EventStarted, task.EventAttemptFailed}, wantRecords: 2},
		{name: "storekeeper down a while: the start recorded, the result sent again until stored", typ: "noop", payload: `{}`, grant: 1, setup: func(e *nodeEnv) { e.results.fail = 3 },
			wantDone: []queue.Done{{}}, wantStatus: task.StatusRunning, wantKinds: []string{task.EventAccepted, task.EventStarted}, wantStored: 1, wantWithStart: 0, wantRecords: 1, computed: -1},
		{name: "storekeeper and state store down a while: the start waits for the store, the result for both", typ: "noop", payload: `{}`, grant: 1, setup: func(e *nodeEnv) { e.results.fail = 3; e.records.down = 3 },
			wantDone: []queue.Done{{}}, wantStatus: task.StatusRunning, wantKinds: []string{task.EventAccepted, task.EventStarted}, wantStored: 1, wantWithStart: 0, wantRecords: 4, computed: -1},
		{name: "duplicate dispatch of a short task, storekeeper down once: the start refused, the result keeps it", typ: "noop", payload: `{}`, attempts: 1, grant: 1, setup: func(e *nodeEnv) { e.results.fail = 1 },
			wantDone: []queue.Done{{}}, wantStatus: task.StatusPending, wantStored: 1, wantWithStart: 1, wantRecords: 1, computed: -1},
		{name: "state store down a while: the start waits for it", typ: "sleep", payload: `{"ms":10}`, grant: 1, setup: func(e *nodeEnv) { e.records.down = 2 },
			wantDone: []queue.Done{{}}, wantStatus: task.StatusRunning, wantKinds: []string{task.EventAccepted, task.EventStarted}, wantStored: 1, wantRecords: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newNodeEnv(t, "vm-0")
				defer e.close()
				g := e.submit(tt.typ, tt.payload, "vm-0")
				id := g.Assignment.TaskID
				rec := e.records.recs[id]
				rec.Attempts = tt.attempts
				e.records.recs[id] = rec
				g.Assignment.Attempt = tt.grant
				if tt.noSpec {
					g.Assignment.Spec = nil
				}
				g.Assignment.Redispatched = tt.redispatch
				if tt.setup != nil {
					tt.setup(e)
				}
				if refused := e.node.Take([]queue.Grant{g}); len(refused) != 0 {
					t.Fatalf("refused %v", refused)
				}
				e.node.wg.Wait()
				req := e.lastSync(t)
				want := slices.Clone(tt.wantDone)
				for i := range want {
					want[i].AttemptID = g.Assignment.ID()
				}
				if !slices.Equal(req.Done, want) {
					t.Errorf("done %+v, want %+v", req.Done, want)
				}
				if len(req.Held) != 0 || !slices.Equal(req.Free, []string{"vm-0"}) || req.Seen != g.Seq {
					t.Errorf("sync held %v, free %v, seen %d; want nothing held, vm-0 free, seen %d", req.Held, req.Free, req.Seen, g.Seq)
				}
				if got := e.records.get(id).Status; got != tt.wantStatus {
					t.Errorf("record status %s, want %s", got, tt.wantStatus)
				}
				if got := e.events.kinds(id); !slices.Equal(got, tt.wantKinds) {
					t.Errorf("events %v, want %v", got, tt.wantKinds)
				}
				if got := e.results.stored[id]; got != tt.wantStored {
					t.Errorf("stored %d times, want %d", got, tt.wantStored)
				}
				if got := e.results.withStart[id]; got != tt.wantWithStart {
					t.Errorf("%d results carried their start, want %d", got, tt.wantWithStart)
				}
				if e.records.calls != tt.wantRecords {
					t.Errorf("record calls %d, want %d", e.records.calls, tt.wantRecords)
				}
				if tt.computed >= 0 && tt.wantStatus == task.StatusPending && tt.wantRecords == 1 {
					if got := e.computed(t, tt.typ); got != tt.computed {
						t.Errorf("task code ran %v times, want %d", got, tt.computed)
					}
				}
				// A done attempt is reported once.
				if again := e.lastSync(t); len(again.Done) != 0 {
					t.Errorf("done reported again: %+v", again.Done)
				}
			})
		})
	}
}

// The gateway writes a task's record while its first attempt is queued and pushed, so
// the worker may look for it before it is there: a first attempt queued within
// task.RecordGrace waits for its record, one queued before is dropped (the task does
// not exist), and a later attempt never waits.
func TestRecordOnItsWay(t *testing.T) {
	tests := []struct {
		name     string
		attempt  int
		queued   time.Duration // before the grant was taken
		appears  time.Duration // after the grant was taken; 0: never
		started  bool
		minCalls int // record reads at least
	}{
		{"first attempt just queued: the start waits for the record", 1, 0, 50 * time.Millisecond, true, 2},
		{"first attempt past the grace: dropped", 1, task.RecordGrace + time.Second, 0, false, 1},
		{"no record within the grace: dropped once it is over", 1, 0, 0, false, 2},
		{"a later attempt: dropped at once", 2, 0, 0, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newNodeEnv(t, "vm-0")
				defer e.close()
				g := e.submit("noop", `{}`, "vm-0")
				id := g.Assignment.TaskID
				g.Assignment.Spec = nil // read first
				g.Assignment.Attempt = tt.attempt
				g.Assignment.Enqueued = time.Now().Add(-tt.queued)
				rec := e.records.get(id)
				rec.Attempts = tt.attempt - 1
				e.records.mu.Lock()
				delete(e.records.recs, id)
				e.records.mu.Unlock()
				if tt.appears > 0 {
					time.AfterFunc(tt.appears, func() {
						e.records.mu.Lock()
						defer e.records.mu.Unlock()
						e.records.recs[id] = rec
					})
				}
				if refused := e.node.Take([]queue.Grant{g}); len(refused) != 0 {
					t.Fatalf("refused %v", refused)
				}
				e.node.wg.Wait()
				req := e.lastSync(t)
				if want := []queue.Done{{AttemptID: g.Assignment.ID()}}; !slices.Equal(req.Done, want) {
					t.Errorf("done %+v, want %+v", req.Done, want)
				}
				if got := e.records.get(id).Status == task.StatusRunning; got != tt.started {
					t.Errorf("started %v, want %v (record %+v)", got, tt.started, e.records.get(id))
				}
				if got := e.results.stored[id] == 1; got != tt.started {
					t.Errorf("stored %d times, want stored = %v", e.results.stored[id], tt.started)
				}
				if e.records.calls < tt.minCalls || !tt.started && tt.minCalls == 1 && e.records.calls != 1 {
					t.Errorf("record calls %d, want at least %d (exactly 1 when dropped at once)", e.records.calls, tt.minCalls)
				}
			})
		})
	}
}

// Attempts granted together share their calls: one record write for all starts, one
// hand-off to the storekeeper, one publish of their events.
func TestConcurrentAttemptsShareCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slots := []string{"vm-0", "vm-1", "vm-2", "vm-3"}
		e := newNodeEnv(t, slots...)
		defer e.close()
		var grants []queue.Grant
		for _, s := range slots {
			grants = append(grants, e.submit("sleep", `{"ms":10}`, s))
		}
		e.node.Take(grants)
		e.node.wg.Wait()
		if e.records.calls > 2 || e.results.calls > 3 {
			t.Errorf("%d record calls and %d storekeeper calls for 4 attempts granted at once; want them shared", e.records.calls, e.results.calls)
		}
		req := e.lastSync(t)
		if len(req.Done) != 4 {
			t.Errorf("done %+v, want 4", req.Done)
		}
	})
}

// Where grants go, what a node refuses, and what the queue takes back.
func TestTakeBufferAndDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0", "vm-1")
		defer e.close()
		long := func(slot string) queue.Grant { return e.submit("sleep", `{"ms":60000}`, slot) }
		g0, g1, b1, b2, over := long("vm-0"), long("vm-0"), long("vm-0"), long(""), long("vm-1")
		alien := e.submit("noop", `{}`, "other-0")
		// g0 on its slot; g1's slot is busy, so it runs on the free one; b1 and b2 wait in
		// the buffer (room for as many as the node has slots); over finds no room;
		// a grant for another node's slot is refused; g0 again is taken silently.
		refused := e.node.Take([]queue.Grant{g0, g1, b1, b2, over, alien, g0})
		if want := []task.AttemptID{over.Assignment.ID(), alien.Assignment.ID()}; !slices.Equal(refused, want) {
			t.Fatalf("refused %v, want %v", refused, want)
		}
		synctest.Wait()
		req := e.lastSync(t)
		if len(req.Held) != 4 || len(req.Free) != 0 || req.Prefetch != 0 {
			t.Fatalf("sync held %v free %v prefetch %d; want 4 held, nothing free, no room", req.Held, req.Free, req.Prefetch)
		}
		e.node.mu.Lock()
		slots := map[string]task.AttemptID{}
		for s, a := range e.node.busy {
			slots[s] = a.id()
		}
		e.node.mu.Unlock()
		if slots["vm-0"] != g0.Assignment.ID() || slots["vm-1"] != g1.Assignment.ID() {
			t.Fatalf("slots run %v", slots)
		}
		// The queue takes g0 back (taken for lost): it stops, nothing more is said of it,
		// and its slot starts the first buffered attempt at once.
		e.queue.reply = queue.SyncReply{Drop: []task.AttemptID{g0.Assignment.ID()}}
		e.lastSync(t)
		synctest.Wait()
		req = e.lastSync(t)
		if len(req.Held) != 3 || len(req.Done) != 0 || req.Prefetch != 1 {
			t.Fatalf("after the drop: held %v done %v prefetch %d", req.Held, req.Done, req.Prefetch)
		}
		e.node.mu.Lock()
		onVm0 := e.node.busy["vm-0"]
		e.node.mu.Unlock()
		if onVm0 == nil || onVm0.id() != b1.Assignment.ID() {
			t.Fatalf("vm-0 runs %v, want the first buffered attempt", onVm0)
		}
		// Draining gives the buffer back at once (refused: the same attempt at the head
		// of the queue), and a grant of a sync reply is refused.
		e.node.Drain(expired(t))
		late := e.submit("noop", `{}`, "")
		e.queue.reply = queue.SyncReply{Given: []queue.Grant{late}}
		req = e.lastSync(t)
		if !slices.Contains(req.Done, queue.Done{AttemptID: b2.Assignment.ID(), Refused: true}) || !req.Draining || len(req.Free) != 0 || req.Prefetch != 0 {
			t.Fatalf("first draining sync %+v, want the buffered attempt given back", req)
		}
		if req = e.lastSync(t); !slices.Equal(req.Done, []queue.Done{{AttemptID: late.Assignment.ID(), Refused: true}}) {
			t.Fatalf("second draining sync %+v, want the late grant refused", req)
		}
	})
}

// expired is a context whose time is up.
func expired(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

// A failed sync keeps what it carried for the next one.
func TestFailedSyncKeepsReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0")
		defer e.close()
		g := e.submit("noop", `{}`, "vm-0")
		e.node.Take([]queue.Grant{g})
		e.node.wg.Wait()
		e.queue.err = errors.New("queue unreachable")
		if err := e.node.syncOnce(t.Context()); err == nil {
			t.Fatal("syncOnce = nil error")
		}
		e.queue.err = nil
		if req := e.lastSync(t); len(req.Done) != 1 {
			t.Fatalf("done %+v after a failed sync, want the attempt", req.Done)
		}
	})
}

// Fault injection: the attempt vanishes without a report, its slot is down a moment.
func TestVanishedAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0")
		defer e.close()
		e.node.faults = 1
		g := e.submit("noop", `{}`, "vm-0")
		e.node.Take([]queue.Grant{g})
		e.node.wg.Wait()
		req := e.lastSync(t)
		if len(req.Done) != 0 || len(req.Held) != 0 || len(req.Free) != 0 || req.Seen != g.Seq {
			t.Fatalf("sync after the fault %+v: want nothing held, done or free, and the grant seen", req)
		}
		time.Sleep(e.node.restartAfter)
		if req := e.lastSync(t); !slices.Equal(req.Free, []string{"vm-0"}) {
			t.Fatalf("slot not back after the restart: free %v", req.Free)
		}
	})
}

// Draining waits for held attempts; past its time it gives them back.
func TestDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0", "vm-1")
		defer e.close()
		short := e.submit("sleep", `{"ms":100}`, "vm-0")
		long := e.submit("sleep", `{"ms":60000}`, "vm-1")
		e.node.Take([]queue.Grant{short, long})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		e.node.Drain(ctx)
		e.node.Stop(t.Context())
		req := e.queue.reqs[len(e.queue.reqs)-1]
		want := []queue.Done{{AttemptID: short.Assignment.ID()}, {AttemptID: long.Assignment.ID(), Requeue: true}}
		if !slices.Equal(req.Done, want) || !req.Draining {
			t.Fatalf("last sync %+v, want short done and long given back", req)
		}
	})
}

func (f *fakeRecords) Create(_ context.Context, rec task.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.recs[rec.ID]; ok {
		return taskstore.ErrExists
	}
	f.recs[rec.ID] = rec
	return nil
}

// The fake of the records port keeps the contract the real store keeps through the
// sidecar (internal/e2e runs the same suite on it).
func TestFakeRecordsContract(t *testing.T) {
	contract.TestRecords(t, &fakeRecords{recs: map[uuid.UUID]task.Record{}})
}

// An attempt taken back by the queue after its computation finished still delivers its
// result (it may be the first), and nothing more of it is reported.
func TestDroppedWhileDeliveringStillDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0")
		defer e.close()
		e.results.fail = 1 << 30 // the storekeeper is unreachable for now
		g := e.submit("noop", `{}`, "vm-0")
		e.node.Take([]queue.Grant{g})
		time.Sleep(time.Second) // computed; deliveries failing
		e.queue.reply = queue.SyncReply{Drop: []task.AttemptID{g.Assignment.ID()}}
		e.lastSync(t)
		e.results.mu.Lock()
		e.results.fail = 0
		e.results.mu.Unlock()
		e.node.wg.Wait()
		if got := e.results.stored[g.Assignment.TaskID]; got != 1 {
			t.Fatalf("stored %d times, want the late result delivered once", got)
		}
		if req := e.lastSync(t); len(req.Done) != 0 || len(req.Held) != 0 {
			t.Fatalf("after the drop: done %v held %v, want nothing", req.Done, req.Held)
		}
	})
}

// While work waits in the queue, the buffer holds Prefetch attempts, or horizon's worth at
// the node's pace while that is more (at most BufferMax); PREFETCH=0 keeps it off
// whatever the pace. Without a backlog it holds Prefetch, however fast the pace.
func TestBufferFollowsThePace(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		prefetch int
		horizon  time.Duration
		perSec   int // attempts started a second, steadily
		want     int
	}{
		{"idle node", 4, 250 * time.Millisecond, 0, 4},
		{"long tasks", 4, 250 * time.Millisecond, 8, 4},
		{"short tasks", 4, 250 * time.Millisecond, 200, 50},
		{"very short tasks", 4, 250 * time.Millisecond, 100_000, BufferMax},
		{"horizon off", 4, 0, 400, 4},
		{"buffer off", 0, 250 * time.Millisecond, 400, 0},
		{"no backlog", 4, 250 * time.Millisecond, 400, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{prefetch: tc.prefetch, horizon: tc.horizon, backlog: tc.name != "no backlog"}
			now := steadyPace(&n.pace, at, tc.perSec)
			if got := n.bufferWant(now); got != tc.want {
				t.Fatalf("bufferWant = %d, want %d (rate %.0f/s)", got, tc.want, n.pace.last)
			}
		})
	}
}

// steadyPace adds one second of perSec starts to p from at, in steps of 10 ms, and
// returns the time at its end.
func steadyPace(p *pace, at time.Time, perSec int) time.Time {
	now := at
	for i := range 100 {
		p.add(now, perSec*(i+1)/100-perSec*i/100)
		now = now.Add(10 * time.Millisecond)
	}
	return now
}

// A pause ends the fast pace: the window that spans it is slow.
func TestPaceSlowsAfterAPause(t *testing.T) {
	t.Parallel()
	var p pace
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for range 50 {
		p.add(now, 10)
		now = now.Add(10 * time.Millisecond)
	}
	if r := p.rate(now); r < 900 || r > 1100 {
		t.Fatalf("rate while busy = %.0f/s, want about 1000", r)
	}
	now = now.Add(5 * time.Second)
	p.add(now, 1)
	if r := p.rate(now.Add(paceWindow)); r > 4 { // one start in the window after it
		t.Fatalf("rate after a 5 s pause = %.1f/s, want at most 4", r)
	}
}

// A refused grant (a push that found no room) is reported as refused in the same sync
// that first says the node has seen its lease number: were the number seen without the
// refusal, the queue would take the lease for lost and run the task as a new attempt.
func TestRefusalGoesWithTheSeenLeaseNumber(t *testing.T) {
	t.Parallel()
	n := NewNode(slog.New(slog.NewTextHandler(io.Discard, nil)), "vm", []string{"vm-0"}, &Executor{Catalog: catalog.Default()}, Services{}, nil)
	n.prefetch, n.horizon = 0, 0
	n.draining = true // refuses everything
	g := queue.Grant{Slot: "vm-0", Seq: 7, Assignment: task.Assignment{TaskID: uuid.New(), Attempt: 1, Priority: task.PriorityNormal}}
	if refused := n.Take([]queue.Grant{g}); len(refused) != 1 {
		t.Fatalf("refused %v, want the grant", refused)
	}
	req, _ := n.request()
	if req.Seen != 7 || !slices.ContainsFunc(req.Done, func(d queue.Done) bool { return d.AttemptID == g.Assignment.ID() && d.Refused }) {
		t.Fatalf("sync after the refusal: seen %d, done %+v; want seen 7 with the grant refused", req.Seen, req.Done)
	}
}

// attemptsBy returns taskgrid_worker_attempts_total of typ by outcome.
func (e *nodeEnv) attemptsBy(t *testing.T, typ string) map[string]int {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, f := range families {
		if f.GetName() != "taskgrid_worker_attempts_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if v := int(m.GetCounter().GetValue()); labels["task"] == typ && v > 0 {
				out[labels["outcome"]] += v
			}
		}
	}
	return out
}

// A held attempt the queue names as cancelled: its computation stops at once, its slot
// takes the next attempt, the node reports nothing more of it (no failure, no retry,
// no result), and it counts as cancelled, not failed. A buffered one never starts.
func TestCancelledAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0")
		defer e.close()
		running, buffered, next := e.submit("sleep", `{"ms":60000}`, "vm-0"), e.submit("sleep", `{"ms":60000}`, ""), e.submit("noop", `{}`, "")
		if refused := e.node.Take([]queue.Grant{running, buffered}); len(refused) != 0 {
			t.Fatalf("refused %v", refused)
		}
		time.Sleep(time.Second) // its start is recorded
		synctest.Wait()
		if got := e.records.recs[running.Assignment.TaskID].Status; got != task.StatusRunning {
			t.Fatalf("status %s, want running", got)
		}
		start := time.Now()
		e.queue.reply = queue.SyncReply{Cancel: []task.AttemptID{running.Assignment.ID(), buffered.Assignment.ID()}}
		e.lastSync(t)
		e.node.Take([]queue.Grant{next})
		synctest.Wait()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if e.results.stored[next.Assignment.TaskID] != 1 {
			t.Fatalf("the next attempt did not run on the freed slot")
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("the slot was freed after %s", took)
		}
		req := e.lastSync(t)
		for _, d := range req.Done {
			if d.TaskID == running.Assignment.TaskID || d.TaskID == buffered.Assignment.TaskID {
				t.Errorf("reported %+v of a cancelled attempt", d)
			}
		}
		if slices.Contains(req.Held, running.Assignment.ID()) || slices.Contains(req.Held, buffered.Assignment.ID()) {
			t.Errorf("still holds a cancelled attempt: %v", req.Held)
		}
		if got := e.attemptsBy(t, "sleep"); got["cancelled"] != 1 || len(got) != 1 {
			t.Errorf("sleep attempts by outcome %v, want one cancelled", got)
		}
		if k := e.events.kinds(running.Assignment.TaskID); slices.Contains(k, task.EventAttemptFailed) {
			t.Errorf("events %v", k)
		}
		if e.results.stored[running.Assignment.TaskID] != 0 {
			t.Error("a result of the cancelled attempt was stored")
		}
	})
}

// When a node syncs again after a sync that gave it work: at once when it needs work at
// the first change after it, in rounds of syncGap while it is busy, and early when its
// buffer runs dry with more work in the queue.
func TestSyncRounds(t *testing.T) {
	tests := []struct {
		name     string
		slots    []string
		gap      time.Duration
		prefetch int      // the buffer the node wants (0: as many as its slots)
		give     []string // the sleep of each attempt the first sync gives (ms), slots first
		room     int      // the room the first sync's reply says the queue holds for the node
		idle     []string // the slots the first sync's reply says the queue holds idle
		within   time.Duration
		after    time.Duration // the second sync comes within [after, within) of the first
	}{
		{name: "idle at the first change: at once", slots: []string{"vm-0", "vm-1"}, gap: 100 * time.Millisecond,
			give: []string{"10"}, after: 10 * time.Millisecond, within: 20 * time.Millisecond},
		// The queue pushes new work into the room it holds: no need to ask for it, and
		// one ended attempt waits for the heartbeat.
		{name: "idle at the first change, room at the queue: the heartbeat", slots: []string{"vm-0", "vm-1"}, gap: 100 * time.Millisecond,
			give: []string{"10"}, room: 4, after: queue.HeartbeatInterval, within: queue.HeartbeatInterval + time.Millisecond},
		// So is an idle slot the queue holds: it pushes to it.
		{name: "idle at the first change, an idle slot at the queue: the heartbeat", slots: []string{"vm-0", "vm-1"}, gap: 100 * time.Millisecond,
			give: []string{"10"}, idle: []string{"vm-1"}, after: queue.HeartbeatInterval, within: queue.HeartbeatInterval + time.Millisecond},
		// As many ended attempts as slots make a round.
		{name: "a round's worth ended, room at the queue: the round's end", slots: []string{"vm-0", "vm-1"}, gap: 100 * time.Millisecond,
			give: []string{"10", "20"}, room: 4, after: 100 * time.Millisecond, within: 101 * time.Millisecond},
		// Asked for 6, given 5: nothing more waits. At the first change (10 ms) 2 are
		// buffered, half of the 4 wanted; the slots run dry at 30 ms, and the queue
		// holds room for the node, so they wait.
		{name: "busy at the first change: the round's end", slots: []string{"vm-0", "vm-1"}, gap: 100 * time.Millisecond, prefetch: 4,
			give: []string{"10", "30", "10", "10", "10"}, room: 4, after: 100 * time.Millisecond, within: 101 * time.Millisecond},
		// Without the room, work that came meanwhile would wait in the queue.
		{name: "busy at the first change, dry with nothing to push: at the dry", slots: []string{"vm-0", "vm-1"}, gap: 100 * time.Millisecond, prefetch: 4,
			give: []string{"10", "30", "10", "10", "10"}, after: 30 * time.Millisecond, within: 31 * time.Millisecond},
		{name: "busy, no rounds: at once", slots: []string{"vm-0", "vm-1"}, gap: 0, prefetch: 4,
			give: []string{"10", "30", "10", "10", "10"}, after: 10 * time.Millisecond, within: 20 * time.Millisecond},
		// Asked for 2, given 2: more may wait. Dry at 20 ms.
		{name: "dry with work in the queue: before the round's end", slots: []string{"vm-0"}, gap: 100 * time.Millisecond,
			give: []string{"10", "10"}, after: 20 * time.Millisecond, within: 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newNodeEnv(t, tt.slots...)
				defer e.close()
				e.node.syncGap = tt.gap
				if tt.prefetch > 0 {
					e.node.prefetch = tt.prefetch
				}
				var given []queue.Grant
				for i, ms := range tt.give {
					slot := ""
					if i < len(tt.slots) {
						slot = tt.slots[i]
					}
					given = append(given, e.submit("sleep", `{"ms":`+ms+`}`, slot))
				}
				e.queue.reply = queue.SyncReply{Given: given, Room: tt.room, Idle: tt.idle}
				at := e.runFor(tt.within + 100*time.Millisecond) // every attempt ended and was reported
				if len(at) < 2 {
					t.Fatalf("%d syncs, want at least 2", len(at))
				}
				second := at[1] - at[0]
				e.queue.mu.Lock()
				defer e.queue.mu.Unlock()
				if second < tt.after || second >= tt.within {
					t.Errorf("second sync %v after the first, want within [%v, %v)", second, tt.after, tt.within)
				}
				var reported int
				for _, req := range e.queue.reqs {
					reported += len(req.Done)
				}
				if reported != len(tt.give) {
					t.Errorf("%d attempts reported done in %d syncs, want %d", reported, len(e.queue.reqs), len(tt.give))
				}
			})
		})
	}
}

// A sync that takes long does not put the next heartbeat off: heartbeats keep their
// pace of HeartbeatInterval.
func TestSlowSyncKeepsTheHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0")
		defer e.close()
		e.queue.reply = queue.SyncReply{Idle: []string{"vm-0"}}
		e.queue.during = func() { time.Sleep(queue.HeartbeatInterval - 100*time.Millisecond) }
		at := e.runFor(queue.HeartbeatInterval + 50*time.Millisecond)
		if want := []time.Duration{0, queue.HeartbeatInterval}; !slices.Equal(at, want) {
			t.Fatalf("syncs at %v, want %v", at, want)
		}
	})
}

// A node syncs at once only when the queue must learn something at once or its slots
// would idle while work may wait; otherwise its change waits for its round or its
// heartbeat.
func TestNeedsWork(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		busy     int // slots computing, of 2
		buffered int
		backlog  bool
		room     int
		idle     []string
		done     queue.Done
		draining bool
		want     bool
	}{
		{name: "a free slot, nothing the queue could push to it", want: true},
		{name: "a free slot, an idle slot of the node at the queue", idle: []string{"vm-1"}},
		{name: "a free slot, room at the queue", room: 2},
		{name: "a free slot, an idle slot at the queue, work waiting", idle: []string{"vm-1"}, backlog: true, want: true},
		{name: "slots busy, an attempt ended", busy: 2, done: queue.Done{AttemptID: task.AttemptID{Attempt: 1}}},
		{name: "slots busy, an attempt to run again", busy: 2, done: queue.Done{AttemptID: task.AttemptID{Attempt: 1}, Requeue: true}, want: true},
		{name: "slots busy, an attempt refused", busy: 2, done: queue.Done{AttemptID: task.AttemptID{Attempt: 1}, Refused: true}, want: true},
		{name: "slots busy, draining", busy: 2, draining: true, want: true},
		{name: "slots busy, buffer empty, nothing waiting", busy: 2},
		{name: "slots busy, buffer below half, work waiting", busy: 2, backlog: true, want: true},
		{name: "slots busy, buffer at half, work waiting", busy: 2, buffered: 1, backlog: true},
		{name: "slots busy, buffer and room at half, work waiting", busy: 2, room: 1, backlog: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{slots: []string{"vm-0", "vm-1"}, prefetch: 2, backlog: tc.backlog, room: tc.room, idle: tc.idle,
				draining: tc.draining, busy: map[string]*attempt{}, down: map[string]time.Time{}}
			for _, s := range n.slots[:tc.busy] {
				n.busy[s] = &attempt{slot: s}
			}
			for range tc.buffered {
				n.buffer = append(n.buffer, &attempt{})
			}
			if tc.done != (queue.Done{}) {
				n.done = append(n.done, tc.done)
			}
			if got := n.needsWork(); got != tc.want {
				t.Fatalf("needsWork = %v, want %v", got, tc.want)
			}
		})
	}
}

// The room a node asks for follows its pace: two sync gaps' worth of starts, none for
// an idle node or without a buffer, at most BufferMax.
func TestRoomFollowsThePace(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		prefetch int
		perSec   int // attempts started a second, steadily
		want     int
	}{
		{"idle node", 4, 0, 0},
		{"long tasks", 4, 4, 0},
		{"light load", 4, 10, 2},
		{"steady load", 4, 250, 50},
		{"very short tasks", 4, 100_000, BufferMax},
		{"buffer off", 0, 400, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{prefetch: tc.prefetch, syncGap: 100 * time.Millisecond}
			now := steadyPace(&n.pace, at, tc.perSec)
			if got := n.roomWant(now); got != tc.want {
				t.Fatalf("roomWant = %d, want %d (rate %.0f/s)", got, tc.want, n.pace.last)
			}
		})
	}
}

// While the queue holds room for the node, a free slot waits for a push instead of
// asking; once pushes into the buffer used the room up, it asks at once.
func TestPushesUseTheRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0", "vm-1")
		defer e.close()
		e.queue.reply = queue.SyncReply{Room: 2}
		req := e.lastSync(t)
		if req.Room != 0 {
			t.Fatalf("an idle node asked for room %d, want 0 (no pace yet)", req.Room)
		}
		if e.node.needsWork() {
			t.Fatal("needs work with room at the queue")
		}
		pushed := []queue.Grant{e.submit("sleep", `{"ms":10}`, ""), e.submit("sleep", `{"ms":10}`, "")}
		if refused := e.node.Pushed(pushed); len(refused) != 0 {
			t.Fatalf("refused %v", refused)
		}
		time.Sleep(time.Second) // fake time: both ran and were stored
		synctest.Wait()
		if n := e.computed(t, "sleep"); n != 2 {
			t.Fatalf("%d attempts computed, want 2", n)
		}
		if !e.node.needsWork() {
			t.Fatal("free slots, nothing buffered and the room used up: does not need work")
		}
	})
}

// A push that comes while a sync is on its way may be of a later turn of the queue's
// than the sync's: it comes off what the sync's reply says the queue holds for the node.
func TestPushDuringASync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0", "vm-1", "vm-2")
		defer e.close()
		e.queue.reply = queue.SyncReply{Idle: []string{"vm-1", "vm-2"}, Room: 2}
		e.queue.during = func() {
			e.node.Pushed([]queue.Grant{e.submit("sleep", `{"ms":10}`, "vm-1"), e.submit("sleep", `{"ms":10}`, "")})
		}
		e.lastSync(t)
		e.node.mu.Lock()
		idle, room := slices.Clone(e.node.idle), e.node.roomLeft()
		e.node.mu.Unlock()
		if !slices.Equal(idle, []string{"vm-2"}) || room != 1 {
			t.Fatalf("after the sync the queue holds idle %v and room %d for the node, want [vm-2] and 1", idle, room)
		}
	})
}

// With the storekeeper's calls spaced, a call that follows another (its results came
// while that one was on its way) starts no sooner than the spacing after it, and carries
// what came meanwhile; a lone result goes at once. Without the spacing the second call
// goes as the first returns.
func TestStoreSpacing(t *testing.T) {
	for _, spacing := range []time.Duration{0, 30 * time.Millisecond} {
		t.Run(spacing.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newNodeEnv(t, "vm-0", "vm-1", "vm-2", "vm-3")
				defer e.close()
				e.node.deliveries.Spaced(spacing)
				start := time.Now()
				e.node.Take([]queue.Grant{e.submit("noop", `{}`, "vm-0")})
				synctest.Wait() // its result is on its way: the storekeeper takes 1 ms
				e.node.Take([]queue.Grant{e.submit("noop", `{}`, "vm-1"), e.submit("noop", `{}`, "vm-2")})
				time.Sleep(time.Second)
				synctest.Wait()
				e.results.mu.Lock()
				defer e.results.mu.Unlock()
				if len(e.results.at) != 2 || !slices.Equal(e.results.sizes, []int{1, 2}) {
					t.Fatalf("calls of %v results, want [1 2]", e.results.sizes)
				}
				if first := e.results.at[0].Sub(start); first != 0 {
					t.Errorf("the lone result went %v after it came, want at once", first)
				}
				gap := e.results.at[1].Sub(e.results.at[0])
				if want := max(spacing, time.Millisecond); gap != want {
					t.Errorf("second call %v after the first, want %v", gap, want)
				}
			})
		})
	}
}

// While the storekeeper takes no result, a slot whose task is done takes the next one
// only while the node holds fewer than heldResultsMax results not stored (and fewer
// bytes than heldBytesMax); past that it waits with its result, so the queue backs up
// instead of the node's memory. Once results are stored again, everything goes on, each
// task computed once.
func TestHeldResultsBound(t *testing.T) {
	cases := []struct {
		name              string
		results           int
		bytes             int64
		computedWhileDown int
	}{
		{"no bound reached", 100, 1 << 20, 6},  // every task computed, its result held
		{"one result", 1, 1 << 20, 3},          // two slots, and one slot again after the first result
		{"bytes", 100, 2, 3},                   // a noop result is 2 bytes: the first fits, the next do not
		{"a result past the bytes", 100, 1, 2}, // each slot waits with its own
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newNodeEnv(t, "vm-0", "vm-1")
				defer e.close()
				e.node.heldResultsMax, e.node.heldBytesMax = tc.results, tc.bytes
				e.node.prefetch = 4
				e.results.fail = 1 << 30 // the storekeeper takes nothing for now
				var gs []queue.Grant
				for i := range 6 {
					slot := ""
					if i < 2 {
						slot = "vm-" + strconv.Itoa(i)
					}
					gs = append(gs, e.submit("noop", `{}`, slot))
				}
				if refused := e.node.Take(gs); len(refused) != 0 {
					t.Fatalf("refused %v", refused)
				}
				time.Sleep(10 * time.Second)
				synctest.Wait()
				if got := e.computed(t, "noop"); got != tc.computedWhileDown {
					t.Errorf("%d tasks computed while no result is stored, want %d", got, tc.computedWhileDown)
				}
				if held, _ := e.node.HeldResults(); held != tc.computedWhileDown {
					t.Errorf("%d results held, want %d", held, tc.computedWhileDown)
				}
				e.results.mu.Lock()
				e.results.fail = 0
				e.results.mu.Unlock()
				time.Sleep(10 * time.Second)
				synctest.Wait()
				for _, g := range gs {
					if got := e.results.stored[g.Assignment.TaskID]; got != 1 {
						t.Errorf("task %s stored %d times, want 1", g.Assignment.TaskID, got)
					}
				}
				if got := e.computed(t, "noop"); got != len(gs) {
					t.Errorf("%d tasks computed, want %d (each once)", got, len(gs))
				}
				if held, bytes := e.node.HeldResults(); held != 0 || bytes != 0 {
					t.Errorf("%d results (%d bytes) still held, want none", held, bytes)
				}
			})
		})
	}
}

// A batch of results larger than a store call carries goes in several calls, each
// within storeCallBytes, one after another; a call that fails leaves only its own
// results without an outcome.
func TestStoreCallsSplitByBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0")
		defer e.close()
		started := time.Now()
		result := func(fileBytes int) *attempt {
			id := uuid.New()
			return &attempt{
				grant: queue.Grant{Slot: "vm-0", Assignment: task.Assignment{TaskID: id, Attempt: 1}},
				rec:   task.Record{ID: id, Directory: "d", StartedAt: &started},
				out:   Outcome{Result: catalog.Result{Output: json.RawMessage(`{}`), Files: []task.File{{Suffix: "bin", Data: make([]byte, fileBytes)}}}},
			}
		}
		// 5 MiB files are 6.7 MiB in base64: two to a call of 16 MiB, and a small one more.
		as := []*attempt{result(5 << 20), result(5 << 20), result(5 << 20), result(1 << 10), result(5 << 20)}
		if err := e.node.deliverBatch(t.Context(), as); err != nil {
			t.Fatal(err)
		}
		if want := []int{2, 3}; !slices.Equal(e.results.sizes, want) {
			t.Fatalf("results per call %v, want %v", e.results.sizes, want)
		}
		for i, a := range as {
			if a.stored == nil || !a.stored.Stored {
				t.Errorf("result %d: no stored outcome", i)
			}
		}

		// The second call fails: only its results are left without an outcome.
		for _, a := range as {
			a.stored = nil
		}
		e.results.mu.Lock()
		e.results.sizes, e.results.failAt = nil, 2
		e.results.mu.Unlock()
		if err := e.node.deliverBatch(t.Context(), as); err != nil {
			t.Fatalf("a batch with a call answered: %v, want no error", err)
		}
		var missing int
		for _, a := range as {
			if a.stored == nil {
				missing++
			}
		}
		if missing != e.results.sizes[1] || missing == 0 {
			t.Errorf("%d results without an outcome, want the failed call's %d", missing, e.results.sizes[1])
		}
	})
}

// A result no store call can carry fails its attempt at once, as one the storekeeper
// rejected: it is never sent, let alone again and again.
func TestResultTooLargeToStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newNodeEnv(t, "vm-0")
		defer e.close()
		reg, err := catalog.NewRegistry(append(defaultTypes(t), hugeType{})...)
		if err != nil {
			t.Fatal(err)
		}
		e.node.exec = &Executor{Catalog: reg}
		g := e.submit("huge", `{}`, "vm-0")
		e.node.Take([]queue.Grant{g})
		time.Sleep(time.Second)
		synctest.Wait()
		if e.results.calls != 0 {
			t.Errorf("%d store calls, want none", e.results.calls)
		}
		req := e.lastSync(t)
		if !slices.Contains(req.Done, queue.Done{AttemptID: g.Assignment.ID(), Requeue: true}) {
			t.Fatalf("sync done %+v, want the attempt failed and its task queued again", req.Done)
		}
		e.events.mu.Lock()
		defer e.events.mu.Unlock()
		var reasons []string
		for _, ev := range e.events.evs {
			if ev.TaskID == g.Assignment.TaskID && ev.Kind == task.EventAttemptFailed {
				reasons = append(reasons, ev.Error)
			}
		}
		if len(reasons) != 1 || !strings.Contains(reasons[0], "result too large to store") {
			t.Errorf("attempt failures %q, want one, with the reason", reasons)
		}
	})
}

// hugeType makes a result larger than any store call carries.
type hugeType struct{}

func (hugeType) Spec() catalog.Spec {
	return catalog.Spec{Name: "huge", Description: "A result larger than any store call.", Example: json.RawMessage(`{}`), TimeLimit: time.Minute}
}
func (hugeType) Prepare(json.RawMessage) (catalog.Job, error) { return hugeJob{}, nil }

type hugeJob struct{}

func (hugeJob) Run(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
	return catalog.Result{Output: json.RawMessage(`{}`), Files: []task.File{{Suffix: "bin", Data: make([]byte, task.MaxStoreBatchBytes)}}}, nil
}

// defaultTypes are the default catalog's types.
func defaultTypes(t *testing.T) []catalog.Type {
	t.Helper()
	var types []catalog.Type
	for _, name := range catalog.Default().Names() {
		typ, err := catalog.Default().Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, typ)
	}
	return types
}
