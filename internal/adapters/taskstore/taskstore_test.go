package taskstore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

const storeName = "statestore"

// fakeState is an in-memory Dapr state store with the ETag semantics of Dapr's Redis
// store: a save with an ETag succeeds only if it matches the stored one; a first-write
// save without an ETag succeeds only if the key does not exist; a mismatch is a gRPC
// Aborted error, as the sidecar returns it. A missing key reads as an item with no
// value, as with the real sidecar.
type fakeState struct {
	mu        sync.Mutex
	items     map[string]fakeItem
	saves     int // successful saves
	conflicts int // saves refused for an ETag mismatch
	stores    map[string]bool

	bulkGets int // GetBulkState calls
	txs      int // ExecuteStateTransaction calls
	txWrites int // writes applied by transactions

	// Test hooks, all optional.
	getErr    error                         // returned by GetState
	saveErr   error                         // returned by SaveStateWithETag, before any ETag check
	deleteErr error                         // returned by DeleteState
	afterGet  func(key string, etag string) // runs after GetState read the item, outside the lock
	// bulkGetErr is returned by the n-th GetBulkState call (1 for the first) when it
	// returns an error; itemErr gives an item its Error.
	bulkGetErr func(n int) error
	itemErr    func(key string) string
	txErr      error // returned by ExecuteStateTransaction before any operation
	// txFails makes the n-th ExecuteStateTransaction call (1 for the first) fail before
	// any operation.
	txFails  func(n int) bool
	beforeTx func() // runs when ExecuteStateTransaction is called, outside the lock
	// maxMessage, when set, is the sidecar's message limit: a transaction whose values,
	// or a bulk read whose answer, add up to more is refused whole (ResourceExhausted).
	maxMessage int
	txSizes    []int // the values' bytes of each transaction applied
	// atomicTx makes a transaction all or nothing. By default it behaves as state.redis:
	// each write checks its own ETag, a conflicting one fails alone, the others are
	// applied, and the call fails if any failed.
	atomicTx bool
}

type fakeItem struct {
	value []byte
	etag  string
	ttl   string // the expiry in seconds a write's ttlInSeconds set ("": none)
}

func newFakeState() *fakeState {
	return &fakeState{items: map[string]fakeItem{}, stores: map[string]bool{}}
}

func (f *fakeState) GetState(_ context.Context, store, key string, _ map[string]string) (*dapr.StateItem, error) {
	f.mu.Lock()
	f.stores[store] = true
	if f.getErr != nil {
		f.mu.Unlock()
		return nil, f.getErr
	}
	it := f.items[key]
	hook := f.afterGet
	f.mu.Unlock()
	if hook != nil {
		hook(key, it.etag)
	}
	return &dapr.StateItem{Key: key, Value: slices.Clone(it.value), Etag: it.etag}, nil
}

func (f *fakeState) SaveStateWithETag(_ context.Context, store, key string, data []byte, etag string, meta map[string]string, so ...dapr.StateOption) error {
	var opts dapr.StateOptions
	for _, o := range so {
		o(&opts)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stores[store] = true
	if f.saveErr != nil {
		return f.saveErr
	}
	return f.save(store, key, data, etag, meta, opts.Concurrency)
}

// save is one save, as state.redis's Set makes it: refused for its ETag before anything
// is written, or written (keeping the key's expiry, as HSET does) and then given the
// expiry its ttlInSeconds asks for. f.mu is held.
func (f *fakeState) save(store, key string, data []byte, etag string, meta map[string]string, concurrency dapr.StateConcurrency) error {
	cur, exists := f.items[key]
	switch {
	case etag != "" && (!exists || cur.etag != etag),
		etag == "" && exists && concurrency == dapr.StateConcurrencyFirstWrite:
		f.conflicts++
		return status.Error(codes.Aborted, "failed saving state in state store "+store+": possible etag mismatch")
	}
	ttl := cur.ttl
	if v := meta["ttlInSeconds"]; v != "" {
		ttl = v
	}
	f.items[key] = fakeItem{value: slices.Clone(data), etag: f.next(key), ttl: ttl}
	f.saves++
	return nil
}

func (f *fakeState) DeleteState(_ context.Context, store, key string, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stores[store] = true
	if f.deleteErr != nil {
		return f.deleteErr
	}
	delete(f.items, key)
	return nil
}

func (f *fakeState) GetBulkState(_ context.Context, store string, keys []string, _ map[string]string, _ int32) ([]*dapr.BulkStateItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stores[store] = true
	f.bulkGets++
	if f.bulkGetErr != nil {
		if err := f.bulkGetErr(f.bulkGets); err != nil {
			return nil, err
		}
	}
	if f.maxMessage > 0 {
		n := 0
		for _, k := range keys {
			n += len(f.items[k].value)
		}
		if n > f.maxMessage {
			return nil, status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, f.maxMessage)
		}
	}
	items := make([]*dapr.BulkStateItem, len(keys))
	for i, k := range keys {
		it := f.items[k]
		items[i] = &dapr.BulkStateItem{Key: k, Value: slices.Clone(it.value), Etag: it.etag}
		if f.itemErr != nil {
			if msg := f.itemErr(k); msg != "" {
				items[i] = &dapr.BulkStateItem{Key: k, Error: msg}
			}
		}
	}
	slices.Reverse(items) // the sidecar does not promise the order of the keys
	return items, nil
}

func (f *fakeState) ExecuteStateTransaction(_ context.Context, store string, _ map[string]string, ops []*dapr.StateOperation) error {
	f.mu.Lock()
	hook := f.beforeTx
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stores[store] = true
	f.txs++
	if f.txErr != nil || f.txFails != nil && f.txFails(f.txs) {
		return cmp.Or(f.txErr, errors.New("state store down"))
	}
	size := 0
	for _, op := range ops {
		size += len(op.Item.Value)
	}
	if f.maxMessage > 0 && size > f.maxMessage {
		return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", size, f.maxMessage)
	}
	f.txSizes = append(f.txSizes, size)
	conflict := func(op *dapr.StateOperation) bool {
		cur, exists := f.items[op.Item.Key]
		return op.Item.Etag != nil && (!exists || cur.etag != op.Item.Etag.Value)
	}
	failed := 0
	for _, op := range ops {
		if conflict(op) {
			failed++
		}
	}
	if failed > 0 && f.atomicTx {
		f.conflicts += failed
		return status.Error(codes.Aborted, "transaction aborted: possible etag mismatch")
	}
	for _, op := range ops {
		// state.redis queues a write's EXPIRE after its script, and Redis runs it even
		// when the script refused the write: the expiry lands on whatever is stored.
		ttl := op.Item.Metadata["ttlInSeconds"]
		if conflict(op) {
			f.conflicts++
			if cur, ok := f.items[op.Item.Key]; ok && ttl != "" {
				cur.ttl = ttl
				f.items[op.Item.Key] = cur
			}
			continue
		}
		if op.Type == dapr.StateOperationTypeDelete {
			delete(f.items, op.Item.Key)
			continue
		}
		if ttl == "" {
			ttl = f.items[op.Item.Key].ttl
		}
		f.items[op.Item.Key] = fakeItem{value: slices.Clone(op.Item.Value), etag: f.next(op.Item.Key), ttl: ttl}
		f.txWrites++
	}
	if failed > 0 {
		return status.Error(codes.Internal, "error executing state transaction: failed to set key")
	}
	return nil
}

// next is the ETag key's next write gets: its version plus one, as state.redis's script
// increments it (1 for a key that does not exist). f.mu is held.
func (f *fakeState) next(key string) string {
	n, _ := strconv.Atoi(f.items[key].etag)
	return strconv.Itoa(n + 1)
}

// bump stands in for another writer: it changes key's ETag without the store's help.
func (f *fakeState) bump(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it := f.items[key]
	it.etag = f.next(key)
	f.items[key] = it
}

func (f *fakeState) item(key string) (fakeItem, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[key]
	return it, ok
}

func (f *fakeState) counts() (saves, conflicts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saves, f.conflicts
}

func newStore(t *testing.T) (*Store, *fakeState) {
	t.Helper()
	f := newFakeState()
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for s := range f.stores {
			if s != storeName {
				t.Errorf("store used state store %q, want only %q", s, storeName)
			}
		}
	})
	return New(f, storeName), f
}

func newRecord() task.Record {
	return task.Record{
		ID: uuid.New(), Type: "primes", Payload: json.RawMessage(`{"limit":100}`), Directory: "results",
		Status: task.StatusPending, Priority: task.PriorityNormal, MaxAttempts: task.MaxAttemptsDefault,
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func key(id uuid.UUID) string { return "task-" + id.String() }

// equalRecords compares the fields the tests set.
func equalRecords(a, b task.Record) bool {
	return a.ID == b.ID && a.Type == b.Type && string(a.Payload) == string(b.Payload) && a.Directory == b.Directory &&
		a.Status == b.Status && a.Priority == b.Priority && a.Attempts == b.Attempts && a.MaxAttempts == b.MaxAttempts &&
		a.CreatedAt.Equal(b.CreatedAt) && a.Worker == b.Worker && a.Error == b.Error
}

func TestCreateGet(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	rec := newRecord()
	if err := s.Create(ctx, rec); err != nil {
		t.Fatalf("Create = %v", err)
	}
	stored, ok := f.item(key(rec.ID))
	if !ok {
		t.Fatalf("Create wrote no key %q", key(rec.ID))
	}
	var onDisk task.Record
	if err := json.Unmarshal(stored.value, &onDisk); err != nil || !equalRecords(onDisk, rec) {
		t.Errorf("stored %s (%v), want the record %+v", stored.value, err, rec)
	}

	got, etag, err := s.Get(ctx, rec.ID)
	if err != nil {
		t.Fatalf("Get = %v", err)
	}
	if !equalRecords(got, rec) {
		t.Errorf("Get = %+v, want %+v", got, rec)
	}
	if etag == "" || etag != stored.etag {
		t.Errorf("Get etag = %q, want the stored %q", etag, stored.etag)
	}
}

func TestCreateTwice(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	rec := newRecord()
	if err := s.Create(ctx, rec); err != nil {
		t.Fatalf("Create = %v", err)
	}
	before, _ := f.item(key(rec.ID))

	other := rec
	other.Type, other.Status = "hash", task.StatusFailed
	err := s.Create(ctx, other)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	after, _ := f.item(key(rec.ID))
	if string(after.value) != string(before.value) || after.etag != before.etag {
		t.Errorf("second Create changed the record: %s (etag %s), was %s (etag %s)", after.value, after.etag, before.value, before.etag)
	}
	if saves, _ := f.counts(); saves != 1 {
		t.Errorf("%d saves, want 1", saves)
	}
}

func TestCreateSaveFailure(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	unavailable := status.Error(codes.Unavailable, "state store down")
	f.saveErr = unavailable
	err := s.Create(t.Context(), newRecord())
	if err == nil || errors.Is(err, ErrExists) {
		t.Fatalf("Create = %v, want a failure that is not ErrExists", err)
	}
	if !errors.Is(err, unavailable) {
		t.Errorf("Create = %v, want it to wrap %v", err, unavailable)
	}
}

func TestGetNotFound(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	id := uuid.New()
	_, _, err := s.Get(t.Context(), id)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), id.String()) {
		t.Errorf("error %q does not name the task", err)
	}
}

func TestGetErrors(t *testing.T) {
	t.Parallel()
	t.Run("store error is not ErrNotFound", func(t *testing.T) {
		t.Parallel()
		s, f := newStore(t)
		down := errors.New("connection refused")
		f.getErr = down
		_, _, err := s.Get(t.Context(), uuid.New())
		if !errors.Is(err, down) || errors.Is(err, ErrNotFound) {
			t.Errorf("Get = %v, want %v and not ErrNotFound", err, down)
		}
	})
	t.Run("corrupt record", func(t *testing.T) {
		t.Parallel()
		s, f := newStore(t)
		id := uuid.New()
		f.items[key(id)] = fakeItem{value: []byte(`{"id":`), etag: "1"}
		_, _, err := s.Get(t.Context(), id)
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Get = %v, want a decode error", err)
		}
	})
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	rec := newRecord()
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	_, etag0, _ := s.Get(ctx, rec.ID)

	got, changed, err := s.Update(ctx, rec.ID, func(r *task.Record) error {
		if r.Status != task.StatusPending {
			t.Errorf("fn saw status %q, want pending", r.Status)
		}
		r.Status, r.Attempts, r.Worker = task.StatusRunning, 1, "node/slot-0"
		return nil
	})
	if err != nil || !changed {
		t.Fatalf("Update = %v, changed %v; want nil, true", err, changed)
	}
	want := rec
	want.Status, want.Attempts, want.Worker = task.StatusRunning, 1, "node/slot-0"
	if !equalRecords(got, want) {
		t.Errorf("Update returned %+v, want %+v", got, want)
	}
	stored, etag1, err := s.Get(ctx, rec.ID)
	if err != nil || !equalRecords(stored, want) {
		t.Errorf("after Update, Get = %+v (%v), want %+v", stored, err, want)
	}
	if etag1 == etag0 {
		t.Errorf("ETag %q did not change on Update", etag1)
	}
	if saves, conflicts := f.counts(); saves != 2 || conflicts != 0 {
		t.Errorf("%d saves, %d conflicts; want 2 (Create, Update) and 0", saves, conflicts)
	}
}

func TestUpdateNotFound(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	called := false
	_, changed, err := s.Update(t.Context(), uuid.New(), func(*task.Record) error { called = true; return nil })
	if !errors.Is(err, ErrNotFound) || changed {
		t.Errorf("Update(unknown) = %v, changed %v; want ErrNotFound, false", err, changed)
	}
	if called {
		t.Error("fn called for a missing record")
	}
	if saves, _ := f.counts(); saves != 0 {
		t.Errorf("%d saves, want none (Update must not create)", saves)
	}
}

func TestUpdateNoChange(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	rec := newRecord()
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	before, _ := f.item(key(rec.ID))
	got, changed, err := s.Update(ctx, rec.ID, func(r *task.Record) error {
		return ErrNoChange
	})
	if err != nil || changed {
		t.Fatalf("Update = %v, changed %v; want nil, false", err, changed)
	}
	if !equalRecords(got, rec) {
		t.Errorf("Update returned %+v, want the current record %+v", got, rec)
	}
	after, _ := f.item(key(rec.ID))
	if saves, _ := f.counts(); saves != 1 || after.etag != before.etag || string(after.value) != string(before.value) {
		t.Errorf("ErrNoChange wrote: %d saves (want 1, the Create), etag %s → %s", saves, before.etag, after.etag)
	}

	// Wrapped, as a caller may return it.
	_, changed, err = s.Update(ctx, rec.ID, func(r *task.Record) error {
		r.Status = task.StatusFailed // a change that must be dropped
		return errors.Join(errors.New("already re-queued"), ErrNoChange)
	})
	if err != nil || changed {
		t.Errorf("Update(wrapped ErrNoChange) = %v, changed %v; want nil, false", err, changed)
	}
	if cur, _, _ := s.Get(ctx, rec.ID); cur.Status != task.StatusPending {
		t.Errorf("status = %q after ErrNoChange, want pending", cur.Status)
	}
}

func TestUpdateFnError(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	rec := newRecord()
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	stale := errors.New("stale assignment")
	calls := 0
	_, changed, err := s.Update(ctx, rec.ID, func(r *task.Record) error {
		calls++
		r.Status = task.StatusCompleted
		return stale
	})
	if !errors.Is(err, stale) || changed {
		t.Errorf("Update = %v, changed %v; want %v, false", err, changed, stale)
	}
	if calls != 1 {
		t.Errorf("fn called %d times, want 1", calls)
	}
	if saves, _ := f.counts(); saves != 1 {
		t.Errorf("%d saves, want 1 (the Create)", saves)
	}
	if cur, _, _ := s.Get(ctx, rec.ID); cur.Status != task.StatusPending {
		t.Errorf("status = %q after a failed fn, want pending", cur.Status)
	}
}

// A conflict re-reads the record and applies fn again to the fresh version.
func TestUpdateRetriesOnConflict(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	rec := newRecord()
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	// Another writer sets Progress between the first read and its save.
	var gets atomic.Int32
	f.afterGet = func(k, _ string) {
		if k != key(rec.ID) || gets.Add(1) != 1 {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		var r task.Record
		_ = json.Unmarshal(f.items[k].value, &r)
		r.Progress = 0.5
		data, _ := json.Marshal(r)
		f.items[k] = fakeItem{value: data, etag: f.next(k)}
	}
	var seen []float64
	got, changed, err := s.Update(ctx, rec.ID, func(r *task.Record) error {
		seen = append(seen, r.Progress)
		r.Attempts++
		return nil
	})
	if err != nil || !changed {
		t.Fatalf("Update = %v, changed %v", err, changed)
	}
	if !slices.Equal(seen, []float64{0, 0.5}) {
		t.Errorf("fn saw progress %v, want [0 0.5] (a retry on the fresh record)", seen)
	}
	if got.Attempts != 1 || got.Progress != 0.5 {
		t.Errorf("Update = attempts %d progress %v, want 1 and the other writer's 0.5", got.Attempts, got.Progress)
	}
	if _, conflicts := f.counts(); conflicts != 1 {
		t.Errorf("%d conflicts, want 1", conflicts)
	}
}

func TestUpdateGivesUpAfterMaxTries(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	rec := newRecord()
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	f.afterGet = func(k, _ string) { f.bump(k) } // someone always writes in between
	calls := 0
	_, changed, err := s.Update(ctx, rec.ID, func(r *task.Record) error { calls++; r.Attempts++; return nil })
	if err == nil || changed {
		t.Fatalf("Update under endless contention = %v, changed %v; want an error", err, changed)
	}
	if !strings.Contains(err.Error(), "conflicting") {
		t.Errorf("error %q does not say it kept conflicting", err)
	}
	if _, conflicts := f.counts(); conflicts != MaxUpdateTries || calls != MaxUpdateTries {
		t.Errorf("%d conflicts, %d fn calls; want %d each", conflicts, calls, MaxUpdateTries)
	}
}

func TestUpdateSaveErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	for _, saveErr := range []error{
		errors.New("connection reset"),
		status.Error(codes.Unavailable, "sidecar restarting"),
		status.Error(codes.Internal, "redis: OOM"),
	} {
		s, f := newStore(t)
		ctx := t.Context()
		rec := newRecord()
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		f.saveErr = saveErr
		calls := 0
		_, changed, err := s.Update(ctx, rec.ID, func(r *task.Record) error { calls++; r.Attempts++; return nil })
		if !errors.Is(err, saveErr) || changed {
			t.Errorf("Update with save error %v = %v, changed %v; want it wrapped, false", saveErr, err, changed)
		}
		if calls != 1 {
			t.Errorf("save error %v: fn called %d times, want 1 (only Aborted is a conflict)", saveErr, calls)
		}
	}
}

// Concurrent updates never lose each other's changes. All writers read the same version
// first, so at least 7 of the 8 conflict and must retry.
func TestUpdateConcurrent(t *testing.T) {
	t.Parallel()
	const writers = 8
	s, f := newStore(t)
	ctx := t.Context()
	rec := newRecord()
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var gets atomic.Int32
	var firstReads sync.WaitGroup
	firstReads.Add(writers)
	f.afterGet = func(string, string) {
		if gets.Add(1) <= writers {
			firstReads.Done()
			firstReads.Wait() // hold every first read until all writers have read
		}
	}

	results := make([]int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			got, changed, err := s.Update(ctx, rec.ID, func(r *task.Record) error { r.Attempts++; return nil })
			if err != nil || !changed {
				t.Errorf("writer %d: Update = %v, changed %v", i, err, changed)
			}
			results[i] = got.Attempts
		})
	}
	wg.Wait()

	final, _, err := s.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.Attempts != writers {
		t.Errorf("Attempts = %d after %d concurrent increments: updates were lost", final.Attempts, writers)
	}
	// Each writer's save built on a different version: they saw 1..8 between them.
	slices.Sort(results)
	want := make([]int, writers)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(results, want) {
		t.Errorf("writers' results = %v, want %v", results, want)
	}
	saves, conflicts := f.counts()
	if saves != 1+writers {
		t.Errorf("%d saves, want %d (Create and one per writer)", saves, 1+writers)
	}
	if conflicts < writers-1 {
		t.Errorf("%d conflicts, want at least %d: the test did not make the writers race", conflicts, writers-1)
	}
}

func idempotencyKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return "idempotency-" + hex.EncodeToString(sum[:])
}

func TestClaimIdempotencyKey(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	first, second, third := uuid.New(), uuid.New(), uuid.New()

	got, claimed, err := s.ClaimIdempotencyKey(ctx, "order-42", first)
	if err != nil || !claimed || got != first {
		t.Fatalf("first claim = %s, %v, %v; want %s, true, nil", got, claimed, err, first)
	}
	got, claimed, err = s.ClaimIdempotencyKey(ctx, "order-42", second)
	if err != nil || claimed || got != first {
		t.Errorf("second claim = %s, %v, %v; want the first id %s, false, nil", got, claimed, err, first)
	}
	got, claimed, err = s.ClaimIdempotencyKey(ctx, "order-43", third)
	if err != nil || !claimed || got != third {
		t.Errorf("claim of another key = %s, %v, %v; want %s, true, nil", got, claimed, err, third)
	}

	// Keys are hashed (any string is a safe state key) and hold the id as JSON.
	it, ok := f.item(idempotencyKey("order-42"))
	if !ok || string(it.value) != `"`+first.String()+`"` {
		t.Errorf("stored %q = %s (present %v), want %q", idempotencyKey("order-42"), it.value, ok, first)
	}
}

func TestClaimIdempotencyKeyConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	const claimers = 8
	ids := make([]uuid.UUID, claimers)
	bound := make([]uuid.UUID, claimers)
	won := make([]bool, claimers)
	var wg sync.WaitGroup
	for i := range claimers {
		ids[i] = uuid.New()
		wg.Go(func() {
			var err error
			bound[i], won[i], err = s.ClaimIdempotencyKey(t.Context(), "same key", ids[i])
			if err != nil {
				t.Errorf("claimer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	winner := -1
	for i, w := range won {
		if w {
			if winner >= 0 {
				t.Fatalf("claimers %d and %d both won", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no claimer won")
	}
	for i, b := range bound {
		if b != ids[winner] {
			t.Errorf("claimer %d got %s, want the winner's %s", i, b, ids[winner])
		}
	}
}

func TestClaimIdempotencyKeySaveFailure(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	down := errors.New("state store down")
	f.saveErr = down
	got, claimed, err := s.ClaimIdempotencyKey(t.Context(), "k", uuid.New())
	if !errors.Is(err, down) || claimed || got != uuid.Nil {
		t.Errorf("claim = %s, %v, %v; want nil id, false, %v", got, claimed, err, down)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	rec, keep := newRecord(), newRecord()
	for _, r := range []task.Record{rec, keep} {
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, rec); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, _, err := s.Get(ctx, rec.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get(ctx, keep.ID); err != nil {
		t.Errorf("Delete removed another record: %v", err)
	}
	// The id is free again.
	if err := s.Create(ctx, rec); err != nil {
		t.Errorf("Create after Delete = %v", err)
	}
	// Deleting what is not there is fine (Dapr does not report it).
	if err := s.Delete(ctx, task.Record{ID: uuid.New()}); err != nil {
		t.Errorf("Delete(unknown) = %v", err)
	}

	down := errors.New("state store down")
	f.deleteErr = down
	if err := s.Delete(ctx, keep); !errors.Is(err, down) {
		t.Errorf("Delete = %v, want %v", err, down)
	}
}

// A payload over InlinePayloadMax is stored apart from its record, whichever way the
// record is created, and read back whole; every other use of the record reads and
// writes it without the payload. Delete removes both.
func TestLargePayloadStoredApart(t *testing.T) {
	t.Parallel()
	small := json.RawMessage(`{"n":1}`)
	edge := json.RawMessage(`{"d":"` + strings.Repeat("e", InlinePayloadMax-8) + `"}`)
	large := json.RawMessage(`{"d":"` + strings.Repeat("x", InlinePayloadMax) + `"}`)
	if len(edge) != InlinePayloadMax {
		t.Fatalf("edge payload of %d bytes, want %d", len(edge), InlinePayloadMax)
	}
	for _, how := range []string{"Create", "CreateMany"} {
		for _, tc := range []struct {
			name    string
			payload json.RawMessage
			apart   bool
		}{{"small", small, false}, {"at the bound", edge, false}, {"large", large, true}} {
			t.Run(how+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				s, f := newStore(t)
				ctx := t.Context()
				rec := newRecord()
				rec.Payload = tc.payload
				var err error
				if how == "Create" {
					err = s.Create(ctx, rec)
				} else {
					err = s.CreateMany(ctx, []task.Record{newRecord(), rec})
				}
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
				got, _, err := s.Get(ctx, rec.ID)
				if err != nil {
					t.Fatal(err)
				}
				if apart := got.PayloadKey != ""; apart != tc.apart || apart && len(got.Payload) != 0 {
					t.Fatalf("record has payload key %q and %d bytes of payload, want apart=%v", got.PayloadKey, len(got.Payload), tc.apart)
				}
				f.mu.Lock()
				stored := len(f.items[recordKey(rec.ID)].value)
				f.mu.Unlock()
				if tc.apart && stored > 1024 {
					t.Errorf("record stored in %d bytes, want it without its payload", stored)
				}
				// A change of the record keeps what it refers to.
				res := s.UpdateMany(ctx, []uuid.UUID{rec.ID}, func(r *task.Record) error { r.Progress = 0.5; return nil })
				if res[0].Err != nil || res[0].Record.PayloadKey != got.PayloadKey {
					t.Fatalf("update: %+v, want the payload key %q kept", res[0], got.PayloadKey)
				}
				p, err := s.Payload(ctx, res[0].Record)
				if err != nil || string(p) != string(tc.payload) {
					t.Fatalf("Payload = %d bytes, %v; want the %d bytes created", len(p), err, len(tc.payload))
				}
				if err := s.Delete(ctx, rec); err != nil {
					t.Fatal(err)
				}
				f.mu.Lock()
				left := len(f.items)
				f.mu.Unlock()
				if want := map[string]int{"Create": 0, "CreateMany": 1}[how]; left != want {
					t.Errorf("%d keys left after Delete, want %d (the other record)", left, want)
				}
			})
		}
	}
}

// A keyed retry that stores another payload under the same id does not change the one
// a stored record refers to; a payload gone missing is reported as ErrNotFound.
func TestPayloadKeyFollowsContent(t *testing.T) {
	t.Parallel()
	s, f := newStore(t)
	ctx := t.Context()
	rec := newRecord()
	rec.Payload = json.RawMessage(`{"d":"` + strings.Repeat("a", InlinePayloadMax) + `"}`)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	other := rec
	other.Payload = json.RawMessage(`{"d":"` + strings.Repeat("b", InlinePayloadMax) + `"}`)
	if err := s.Create(ctx, other); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	got, _, err := s.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.Payload(ctx, got); err != nil || string(p) != string(rec.Payload) {
		t.Fatalf("Payload after a second Create = %.20s..., %v; want the first", p, err)
	}
	f.mu.Lock()
	delete(f.items, got.PayloadKey)
	f.mu.Unlock()
	if _, err := s.Payload(ctx, got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Payload of a missing key = %v, want ErrNotFound", err)
	}
}

// A record written terminal, in a batch or alone, has its payload kept apart removed
// after its write landed; a record still running keeps it, and so does one whose
// terminal write did not land.
func TestTerminalWriteDropsThePayload(t *testing.T) {
	t.Parallel()
	large := json.RawMessage(`{"d":"` + strings.Repeat("x", InlinePayloadMax) + `"}`)
	for _, tc := range []struct {
		name      string
		status    task.Status
		batch     bool
		down      bool // every write fails
		wantKept  bool
		wantWrote bool
	}{
		{"completed in a batch", task.StatusCompleted, true, false, false, true},
		{"cancelled alone", task.StatusCancelled, false, false, false, true},
		{"failed in a batch", task.StatusFailed, true, false, false, true},
		{"running in a batch", task.StatusRunning, true, false, true, true},
		{"completed, the write refused", task.StatusCompleted, true, true, true, false},
	} {
		for _, retention := range []time.Duration{0, time.Hour} { // a transaction, or saved alone
			t.Run(fmt.Sprintf("%s, retention %v", tc.name, retention), func(t *testing.T) {
				t.Parallel()
				_, f := newStore(t)
				s := New(f, storeName, WithRetention(retention))
				ctx := t.Context()
				rec := newRecord()
				rec.Payload = large
				if err := s.Create(ctx, rec); err != nil {
					t.Fatal(err)
				}
				got, _, err := s.Get(ctx, rec.ID)
				if err != nil || got.PayloadKey == "" {
					t.Fatalf("record %+v, %v: want its payload apart", got, err)
				}
				if tc.down {
					f.mu.Lock()
					f.txErr, f.saveErr = errors.New("state store down"), errors.New("state store down")
					f.mu.Unlock()
				}
				fn := func(r *task.Record) error { r.Status = tc.status; return nil }
				wrote := false
				if tc.batch {
					wrote = s.UpdateMany(ctx, []uuid.UUID{rec.ID}, fn)[0].Changed
				} else {
					_, wrote, _ = s.Update(ctx, rec.ID, fn)
				}
				if wrote != tc.wantWrote {
					t.Fatalf("written %v, want %v", wrote, tc.wantWrote)
				}
				f.mu.Lock()
				_, kept := f.items[got.PayloadKey]
				f.mu.Unlock()
				if kept != tc.wantKept {
					t.Errorf("payload kept %v, want %v", kept, tc.wantKept)
				}
			})
		}
	}
}
