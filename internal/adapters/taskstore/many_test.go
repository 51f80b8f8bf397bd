package taskstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// seed stores recs in f as they are, without counting a save.
func seed(f *fakeState, recs ...task.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range recs {
		data, _ := json.Marshal(r)
		f.items[key(r.ID)] = fakeItem{value: data, etag: f.next(key(r.ID))}
	}
}

// stored decodes the record of id in f.
func stored(t *testing.T, f *fakeState, id uuid.UUID) (task.Record, bool) {
	t.Helper()
	it, ok := f.item(key(id))
	if !ok {
		return task.Record{}, false
	}
	var r task.Record
	if err := json.Unmarshal(it.value, &r); err != nil {
		t.Fatalf("stored record %s: %v", id, err)
	}
	return r, true
}

// otherWriter sets the progress of id as another process would, between a read and a write.
func otherWriter(f *fakeState, id uuid.UUID, progress float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var r task.Record
	_ = json.Unmarshal(f.items[key(id)].value, &r)
	r.Progress = progress
	data, _ := json.Marshal(r)
	f.items[key(id)] = fakeItem{value: data, etag: f.next(key(id)), ttl: f.items[key(id)].ttl} // a write keeps the expiry, as HSET does
}

// What fn does to each record of a test, by name.
const (
	inc          = "inc"           // Attempts++
	keep         = "keep"          // ErrNoChange (this package's)
	taskNoChange = "task-nochange" // task.ErrNoChange, wrapped
	stale        = "stale"         // task.ErrStale, wrapped
	boom         = "boom"          // another error
	missing      = "missing"       // no record in the store; fn must not be called
	// incUnlessMoved is inc on a record nobody else changed (progress 0), else task.ErrStale.
	incUnlessMoved = "inc-unless-moved"
)

var errBoom = errors.New("boom")

type outcome struct {
	changed  bool
	err      error // errors.Is; nil for none
	attempts int   // of the stored record afterwards
	progress float64
}

func TestUpdateMany(t *testing.T) {
	t.Parallel()
	changed := func(attempts int) outcome { return outcome{changed: true, attempts: attempts} }
	refused := func(err error) outcome { return outcome{err: err} }
	tests := []struct {
		name   string
		behave []string
		// setup runs before UpdateMany; ids are the records' ids, in order.
		setup func(f *fakeState, ids []uuid.UUID)
		// prefetch, when set, runs UpdateManyRead after a Prefetch of the first prefetch
		// ids (all: len(ids)); afterPrefetch runs between the two.
		prefetch      int
		afterPrefetch func(f *fakeState, ids []uuid.UUID)
		want          []outcome
		// Calls expected: bulk reads, transactions, single saves (the fallback's Updates).
		bulkGets, txs, saves int
		fnCalls              []int // per record
	}{
		{
			name:     "all change: one read, one transaction",
			behave:   []string{inc, inc, inc},
			want:     []outcome{changed(1), changed(1), changed(1)},
			bulkGets: 1, txs: 1, fnCalls: []int{1, 1, 1},
		},
		{
			name:   "mixed: refusals and a missing record are not written",
			behave: []string{inc, keep, taskNoChange, stale, boom, missing, inc},
			want: []outcome{
				changed(1), refused(ErrNoChange), refused(task.ErrNoChange), refused(task.ErrStale),
				refused(errBoom), refused(ErrNotFound), changed(1),
			},
			bulkGets: 1, txs: 1, fnCalls: []int{1, 1, 1, 1, 1, 0, 1},
		},
		{
			name:     "nothing changes: no transaction",
			behave:   []string{keep, stale, missing},
			want:     []outcome{refused(ErrNoChange), refused(task.ErrStale), refused(ErrNotFound)},
			bulkGets: 1, fnCalls: []int{1, 1, 0},
		},
		{
			name:   "conflict as state.redis: the other writes land, the conflicting one is redone on the fresh version",
			behave: []string{inc, inc, inc},
			setup: func(f *fakeState, ids []uuid.UUID) {
				f.beforeTx = func() { otherWriter(f, ids[1], 0.5) }
			},
			want:     []outcome{changed(1), {changed: true, attempts: 1, progress: 0.5}, changed(1)},
			bulkGets: 2, txs: 1, saves: 1, fnCalls: []int{1, 2, 1},
		},
		{
			name:   "conflict in an all-or-nothing transaction: every write is redone",
			behave: []string{inc, inc, inc},
			setup: func(f *fakeState, ids []uuid.UUID) {
				f.atomicTx = true
				f.beforeTx = func() { otherWriter(f, ids[1], 0.5) }
			},
			want:     []outcome{changed(1), {changed: true, attempts: 1, progress: 0.5}, changed(1)},
			bulkGets: 2, txs: 1, saves: 3, fnCalls: []int{2, 2, 2},
		},
		{
			name:   "conflict: the redo on the fresh version may refuse",
			behave: []string{incUnlessMoved, inc},
			setup: func(f *fakeState, ids []uuid.UUID) {
				f.beforeTx = func() { otherWriter(f, ids[0], 0.5) }
			},
			want:     []outcome{{err: task.ErrStale, progress: 0.5}, changed(1)},
			bulkGets: 2, txs: 1, fnCalls: []int{2, 1},
		},
		{
			name:   "transaction call fails: every changed record goes through Update",
			behave: []string{inc, keep, inc},
			setup: func(f *fakeState, _ []uuid.UUID) {
				f.txErr = status.Error(codes.Unavailable, "sidecar restarting")
			},
			want:     []outcome{changed(1), refused(ErrNoChange), changed(1)},
			bulkGets: 2, txs: 1, saves: 2, fnCalls: []int{2, 1, 2},
		},
		{
			name:   "transaction fails and its outcome cannot be read: an error, no guess",
			behave: []string{inc, keep},
			setup: func(f *fakeState, _ []uuid.UUID) {
				f.txErr = errors.New("connection reset")
				f.bulkGetErr = func(n int) error {
					if n == 2 {
						return errors.New("connection refused")
					}
					return nil
				}
			},
			want:     []outcome{{err: errAny}, refused(ErrNoChange)},
			bulkGets: 2, txs: 1, fnCalls: []int{1, 1},
		},
		{
			name:   "the read fails: every record fails, fn is not called",
			behave: []string{inc, inc},
			setup: func(f *fakeState, _ []uuid.UUID) {
				f.bulkGetErr = func(int) error { return errors.New("redis down") }
			},
			want:     []outcome{{err: errAny}, {err: errAny}},
			bulkGets: 1, fnCalls: []int{0, 0},
		},
		{
			name:   "one item fails to read: only its record fails",
			behave: []string{inc, inc},
			setup: func(f *fakeState, ids []uuid.UUID) {
				f.itemErr = func(k string) string {
					if k == key(ids[0]) {
						return "WRONGTYPE"
					}
					return ""
				}
			},
			want:     []outcome{{err: errAny}, changed(1)},
			bulkGets: 1, txs: 1, fnCalls: []int{0, 1},
		},
		{
			name:     "prefetched: no read of its own, one transaction",
			behave:   []string{inc, inc, missing},
			prefetch: 3,
			want:     []outcome{changed(1), changed(1), refused(ErrNotFound)},
			bulkGets: 1, txs: 1, fnCalls: []int{1, 1, 0},
		},
		{
			name:     "changed after the prefetch: found by its ETag, redone on the fresh version",
			behave:   []string{inc, inc, inc},
			prefetch: 3,
			afterPrefetch: func(f *fakeState, ids []uuid.UUID) {
				otherWriter(f, ids[1], 0.5)
			},
			want:     []outcome{changed(1), {changed: true, attempts: 1, progress: 0.5}, changed(1)},
			bulkGets: 2, txs: 1, saves: 1, fnCalls: []int{1, 2, 1},
		},
		{
			name:     "the prefetch failed: read again",
			behave:   []string{inc, inc},
			prefetch: 2,
			setup: func(f *fakeState, _ []uuid.UUID) {
				f.bulkGetErr = func(n int) error {
					if n == 1 {
						return errors.New("sidecar restarting")
					}
					return nil
				}
			},
			want:     []outcome{changed(1), changed(1)},
			bulkGets: 2, txs: 1, fnCalls: []int{1, 1},
		},
		{
			name:     "the prefetch lacks a record: read again",
			behave:   []string{inc, inc},
			prefetch: 1,
			want:     []outcome{changed(1), changed(1)},
			bulkGets: 2, txs: 1, fnCalls: []int{1, 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, f := newStore(t)
			ids := make([]uuid.UUID, len(tc.behave))
			behaviour := map[uuid.UUID]string{}
			for i, b := range tc.behave {
				rec := newRecord()
				ids[i], behaviour[rec.ID] = rec.ID, b
				if b != missing {
					seed(f, rec)
				}
			}
			if tc.setup != nil {
				tc.setup(f, ids)
			}
			var mu sync.Mutex
			calls := map[uuid.UUID]int{}
			fn := func(r *task.Record) error {
				mu.Lock()
				calls[r.ID]++
				mu.Unlock()
				r.Attempts++ // a change that refusals must drop
				switch behaviour[r.ID] {
				case inc:
					return nil
				case incUnlessMoved:
					if r.Progress != 0 {
						return task.ErrStale
					}
					return nil
				case keep:
					return ErrNoChange
				case taskNoChange:
					return fmt.Errorf("complete %s: %w", r.ID, task.ErrNoChange)
				case stale:
					return fmt.Errorf("complete %s: %w", r.ID, task.ErrStale)
				case boom:
					return errBoom
				}
				t.Errorf("fn called for record %s (%s)", r.ID, behaviour[r.ID])
				return nil
			}

			var results []Result
			if tc.prefetch > 0 {
				read := s.Prefetch(t.Context(), ids[:tc.prefetch])
				if tc.afterPrefetch != nil {
					tc.afterPrefetch(f, ids)
				}
				results = s.UpdateManyRead(t.Context(), ids, read, fn)
			} else {
				results = s.UpdateMany(t.Context(), ids, fn)
			}

			if len(results) != len(ids) {
				t.Fatalf("%d results for %d ids", len(results), len(ids))
			}
			for i, want := range tc.want {
				got := results[i]
				switch {
				case want.err == errAny && got.Err == nil,
					want.err != errAny && !errors.Is(got.Err, want.err):
					t.Errorf("record %d (%s): Err = %v, want %v", i, tc.behave[i], got.Err, want.err)
				case got.Changed != want.changed:
					t.Errorf("record %d (%s): Changed = %v, want %v", i, tc.behave[i], got.Changed, want.changed)
				}
				rec, ok := stored(t, f, ids[i])
				if tc.behave[i] == missing {
					if ok {
						t.Errorf("record %d: UpdateMany created a missing record", i)
					}
					continue
				}
				if rec.Attempts != want.attempts || rec.Progress != want.progress {
					t.Errorf("record %d (%s): stored attempts %d progress %v, want %d and %v", i, tc.behave[i], rec.Attempts, rec.Progress, want.attempts, want.progress)
				}
				if got.Err == nil && (got.Record.Attempts != rec.Attempts || got.Record.Progress != rec.Progress || got.Record.ID != ids[i]) {
					t.Errorf("record %d: Result.Record = %+v, want the stored %+v", i, got.Record, rec)
				}
				if want.err != nil && want.err != errAny && got.Record.Attempts != 0 {
					t.Errorf("record %d: a refused change shows in Result.Record (attempts %d)", i, got.Record.Attempts)
				}
			}
			for i, want := range tc.fnCalls {
				if got := calls[ids[i]]; got != want {
					t.Errorf("record %d (%s): fn called %d times, want %d", i, tc.behave[i], got, want)
				}
			}
			f.mu.Lock()
			bulkGets, txs, saves := f.bulkGets, f.txs, f.saves
			f.mu.Unlock()
			if bulkGets != tc.bulkGets || txs != tc.txs || saves != tc.saves {
				t.Errorf("calls: %d bulk reads, %d transactions, %d single saves; want %d, %d, %d",
					bulkGets, txs, saves, tc.bulkGets, tc.txs, tc.saves)
			}
		})
	}
}

// errAny stands for "some error" in a want.
var errAny = errors.New("any error")

// An id listed twice is updated twice, in order, as two Updates would.
func TestUpdateManyRepeatedID(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	a, b := newRecord(), newRecord()
	seed(f, a, b)
	results := s.UpdateMany(t.Context(), []uuid.UUID{a.ID, b.ID, a.ID}, func(r *task.Record) error { r.Attempts++; return nil })
	for i, want := range []int{1, 1, 2} {
		if r := results[i]; r.Err != nil || !r.Changed || r.Record.Attempts != want {
			t.Errorf("result %d = %+v, want changed with attempts %d", i, r, want)
		}
	}
	if rec, _ := stored(t, f, a.ID); rec.Attempts != 2 {
		t.Errorf("stored attempts of the repeated id = %d, want 2", rec.Attempts)
	}
}

func TestUpdateManyNothing(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	if got := s.UpdateMany(t.Context(), nil, func(*task.Record) error { return nil }); len(got) != 0 {
		t.Errorf("UpdateMany(nil) = %v", got)
	}
	if f.bulkGets+f.txs != 0 {
		t.Errorf("UpdateMany(nil) made %d calls", f.bulkGets+f.txs)
	}
	if got := s.UpdateManyRead(t.Context(), nil, s.Prefetch(t.Context(), nil), func(*task.Record) error { return nil }); len(got) != 0 {
		t.Errorf("UpdateManyRead(nil) = %v", got)
	}
	if f.bulkGets+f.txs != 0 {
		t.Errorf("Prefetch(nil) and UpdateManyRead(nil) made %d calls", f.bulkGets+f.txs)
	}
}

func TestCreateMany(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		recs    int
		dupe    bool
		txErr   error
		wantErr bool
		wantTxs int
	}{
		{name: "all in one transaction", recs: 5, wantTxs: 1},
		{name: "none: no call", recs: 0, wantTxs: 0},
		{name: "an id twice is refused before any call", recs: 3, dupe: true, wantErr: true, wantTxs: 0},
		{name: "a failed transaction is reported", recs: 2, txErr: status.Error(codes.Unavailable, "down"), wantErr: true, wantTxs: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, f := newStore(t)
			f.txErr = tc.txErr
			recs := make([]task.Record, tc.recs)
			for i := range recs {
				recs[i] = newRecord()
			}
			if tc.dupe {
				recs[2].ID = recs[0].ID
			}
			err := s.CreateMany(t.Context(), recs)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CreateMany = %v, want an error: %v", err, tc.wantErr)
			}
			if tc.txErr != nil && !errors.Is(err, tc.txErr) {
				t.Errorf("CreateMany = %v, want it to wrap %v", err, tc.txErr)
			}
			if f.txs != tc.wantTxs || f.saves != 0 || f.bulkGets != 0 {
				t.Errorf("%d transactions, %d saves, %d bulk reads; want %d, 0, 0", f.txs, f.saves, f.bulkGets, tc.wantTxs)
			}
			if tc.wantErr {
				return
			}
			for _, r := range recs {
				got, etag, err := s.Get(t.Context(), r.ID)
				if err != nil || !equalRecords(got, r) || etag == "" {
					t.Errorf("Get(%s) = %+v, %q, %v; want the created record", r.ID, got, etag, err)
				}
			}
		})
	}
}

// Records made by CreateMany take ETag-guarded updates like any other.
func TestCreateManyThenUpdateMany(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	recs := []task.Record{newRecord(), newRecord()}
	if err := s.CreateMany(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	for i, r := range s.UpdateMany(t.Context(), []uuid.UUID{recs[0].ID, recs[1].ID}, func(r *task.Record) error {
		r.Status = task.StatusRunning
		return nil
	}) {
		if r.Err != nil || !r.Changed || r.Record.Status != task.StatusRunning {
			t.Errorf("result %d = %+v", i, r)
		}
	}
}

// Large payloads (stored apart from their records, in the same transactions) go in
// several transactions of at most txBytes, and a bulk read whose answer is too large for
// one message (records stored with their payloads inline, by an earlier version) is read
// again in halves: a batch of them is never refused whole, for ever, by the sidecar's
// message limit.
func TestLargeRecordsFitTheMessageLimit(t *testing.T) {
	t.Parallel()
	f := newFakeState()
	f.maxMessage = 20 << 20
	s := New(f, "statestore")
	payload := json.RawMessage(`"` + strings.Repeat("x", 6<<20) + `"`)
	var recs []task.Record
	var ids []uuid.UUID
	for range 5 {
		rec, _ := task.Accept(task.Record{ID: uuid.New(), Type: "hash", Payload: payload, Directory: "d", MaxAttempts: 3}, time.Now())
		recs = append(recs, rec)
		ids = append(ids, rec.ID)
	}
	if err := s.CreateMany(t.Context(), recs); err != nil {
		t.Fatalf("CreateMany of 5 records of 6 MiB: %v", err)
	}
	if f.txs != 3 {
		t.Errorf("%d transactions for 30 MiB of payloads, want 3 (two, two and one)", f.txs)
	}
	for _, n := range f.txSizes {
		if n > txBytes {
			t.Errorf("a transaction of %d bytes, more than %d", n, txBytes)
		}
	}
	f.mu.Lock()
	for _, rec := range recs { // as an earlier version stored them: payloads inline
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		f.items[recordKey(rec.ID)] = fakeItem{value: data, etag: f.next(recordKey(rec.ID))}
	}
	f.txs, f.txSizes, f.bulkGets = 0, nil, 0
	f.mu.Unlock()
	results := s.UpdateMany(t.Context(), ids, func(rec *task.Record) error {
		rec.Priority = task.PriorityHigh
		return nil
	})
	for i, r := range results {
		if r.Err != nil || !r.Changed || r.Record.Priority != task.PriorityHigh {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if f.bulkGets != 3 || f.txs != 3 {
		t.Errorf("%d bulk reads and %d transactions, want 3 and 3 (30 MiB read: refused, then 12 and 18 MiB; written in two, two and one)", f.bulkGets, f.txs)
	}
}
