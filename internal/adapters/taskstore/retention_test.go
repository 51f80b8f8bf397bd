package taskstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/env"
)

func newRetainingStore(t *testing.T, d time.Duration) (*Store, *fakeState) {
	t.Helper()
	_, f := newStore(t)
	return New(f, storeName, WithRetention(d)), f
}

func ttlOf(f *fakeState, k string) string {
	it, _ := f.item(k)
	return it.ttl
}

// completeAll completes the records of ids in one batch, all written, and waits for their
// expiries.
func completeAll(t *testing.T, s *Store, read Prefetched, ids ...uuid.UUID) {
	t.Helper()
	for i, r := range s.UpdateManyRead(t.Context(), ids, read, func(r *task.Record) error { r.Status = task.StatusCompleted; return nil }) {
		if !r.Changed || r.Err != nil {
			t.Fatalf("record %d: changed %v, %v; want written", i, r.Changed, r.Err)
		}
	}
	s.Wait(t.Context())
}

// expiresIn checks that the records of ids expire in want seconds ("": none).
func expiresIn(t *testing.T, f *fakeState, want string, ids ...uuid.UUID) {
	t.Helper()
	for _, id := range ids {
		if got := ttlOf(f, key(id)); got != want {
			t.Errorf("record %s: expiry %q, want %q", id, got, want)
		}
	}
}

// With a retention, a write that makes a record completed, failed or cancelled sets its
// expiry, in a batch or alone; every other write sets none. A batch is written in its
// transaction as before, and its terminal records get their expiry in a transaction of
// their own once it has landed; a record written alone carries it in its save. Without
// a retention nothing expires and a batch is one transaction.
func TestRetentionExpiresTerminalRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		retention time.Duration
		statuses  []task.Status // what the batch makes of each record
		batch     bool
		wantTTL   []string
		wantTxs   int
	}{
		{"completed in a batch", time.Hour, []task.Status{task.StatusCompleted, task.StatusCompleted}, true, []string{"3600", "3600"}, 2},
		{"running in a batch", time.Hour, []task.Status{task.StatusRunning, task.StatusPending}, true, []string{"", ""}, 1},
		{"a mixed batch", time.Hour, []task.Status{task.StatusRunning, task.StatusFailed, task.StatusCancelled}, true, []string{"", "3600", "3600"}, 2},
		{"no retention", 0, []task.Status{task.StatusCompleted, task.StatusRunning}, true, []string{"", ""}, 1},
		{"seconds rounded up", 1500 * time.Millisecond, []task.Status{task.StatusCompleted}, true, []string{"2"}, 2},
		{"cancelled alone", time.Hour, []task.Status{task.StatusCancelled}, false, []string{"3600"}, 0},
		{"running alone", time.Hour, []task.Status{task.StatusRunning}, false, []string{""}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, f := newRetainingStore(t, tc.retention)
			ids := make([]uuid.UUID, len(tc.statuses))
			want := map[uuid.UUID]task.Status{}
			var written []task.Record
			for i, st := range tc.statuses {
				rec := newRecord()
				seed(f, rec)
				ids[i], want[rec.ID] = rec.ID, st
			}
			fn := func(r *task.Record) error { r.Status = want[r.ID]; return nil }
			if tc.batch {
				for i, r := range s.UpdateMany(t.Context(), ids, fn) {
					if !r.Changed || r.Err != nil {
						t.Fatalf("record %d: changed %v, %v", i, r.Changed, r.Err)
					}
					written = append(written, r.Record)
				}
			} else {
				rec, changed, err := s.Update(t.Context(), ids[0], fn)
				if !changed || err != nil {
					t.Fatalf("Update: changed %v, %v", changed, err)
				}
				written = append(written, rec)
			}
			s.Wait(t.Context())
			for i, id := range ids {
				if got, _ := stored(t, f, id); !equalRecords(got, written[i]) {
					t.Errorf("record %d: stored %+v, want what the call wrote, %+v", i, got, written[i])
				}
				if got := ttlOf(f, key(id)); got != tc.wantTTL[i] {
					t.Errorf("record %d (%s): expiry %q, want %q", i, tc.statuses[i], got, tc.wantTTL[i])
				}
			}
			f.mu.Lock()
			txs := f.txs
			f.mu.Unlock()
			if txs != tc.wantTxs {
				t.Errorf("%d transactions, want %d", txs, tc.wantTxs)
			}
		})
	}
}

// A terminal write refused for its ETag must not leave its expiry on the version that won:
// here another writer moves the task on (a later attempt) between the read and the write,
// fn then refuses the step, and the record, still running, must keep no expiry (its later
// writes would keep it, and the task vanish while it runs or waits). A transaction with
// the expiry in it (Dapr's Redis store, as the fake does) sets it anyway.
func TestRefusedTerminalWriteSetsNoExpiry(t *testing.T) {
	t.Parallel()
	s, f := newRetainingStore(t, time.Hour)
	moved, done := newRecord(), newRecord()
	moved.Status, moved.Attempts = task.StatusRunning, 1
	done.Status, done.Attempts = task.StatusRunning, 1
	seed(f, moved, done)
	read := s.Prefetch(t.Context(), []uuid.UUID{moved.ID, done.ID})
	otherWriter(f, moved.ID, 0.5) // the task moved on: fn refuses it now
	fn := func(r *task.Record) error {
		if r.Progress != 0 {
			return task.ErrStale
		}
		r.Status = task.StatusCompleted
		return nil
	}
	res := s.UpdateManyRead(t.Context(), []uuid.UUID{moved.ID, done.ID}, read, fn)
	if res[0].Changed || !errors.Is(res[0].Err, task.ErrStale) {
		t.Errorf("the moved record: changed %v, %v; want refused as stale", res[0].Changed, res[0].Err)
	}
	if !res[1].Changed || res[1].Err != nil {
		t.Errorf("the other record: changed %v, %v; want written", res[1].Changed, res[1].Err)
	}
	s.Wait(t.Context())
	if got := ttlOf(f, key(moved.ID)); got != "" {
		t.Errorf("the moved record, still running, expires in %s s; want no expiry", got)
	}
	if got := ttlOf(f, key(done.ID)); got != "3600" {
		t.Errorf("the completed record's expiry %q, want 3600", got)
	}
}

// When the transaction of expiries fails (the store down a moment, or ETags that are not
// state.redis's versions), each record is read and saved again on its own with its
// expiry; a record that changed since (it cannot, once terminal, but if it did) is left
// as it is.
func TestExpiryFallsBackToSingleSaves(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(f *fakeState, rec task.Record)
	}{
		{"the transaction fails", func(f *fakeState, _ task.Record) {
			f.txFails = func(n int) bool { return n == 2 }
		}},
		{"ETags that are not versions", func(f *fakeState, rec task.Record) {
			it := f.items[key(rec.ID)]
			it.etag = "W/abc"
			f.items[key(rec.ID)] = it
			f.txFails = func(n int) bool { return n > 1 } // a transaction of expiries would be a mistake
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, f := newRetainingStore(t, time.Hour)
			rec := newRecord()
			seed(f, rec)
			f.mu.Lock()
			tc.setup(f, rec)
			f.mu.Unlock()
			completeAll(t, s, Prefetched{}, rec.ID)
			expiresIn(t, f, "3600", rec.ID)
			if got, _ := stored(t, f, rec.ID); got.Status != task.StatusCompleted {
				t.Errorf("stored %s, want completed", got.Status)
			}
			if saves, _ := f.counts(); saves != 1 {
				t.Errorf("%d single saves, want 1", saves)
			}
		})
	}
}

// A terminal record written in a transaction that failed for another record's conflict
// is found written by the read-back, and gets its expiry like any batch's.
func TestLandedInAFailedTransactionGetsItsExpiry(t *testing.T) {
	t.Parallel()
	s, f := newRetainingStore(t, time.Hour)
	done, moved := newRecord(), newRecord()
	seed(f, done, moved)
	read := s.Prefetch(t.Context(), []uuid.UUID{done.ID, moved.ID})
	otherWriter(f, moved.ID, 0.5)
	completeAll(t, s, read, done.ID, moved.ID)
	expiresIn(t, f, "3600", done.ID, moved.ID)
}

// An idempotency key expires its retention after its claim; a second claim finds it
// bound and changes nothing.
func TestIdempotencyKeyExpires(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		retention time.Duration
		want      string
	}{{24 * time.Hour, "86400"}, {0, ""}} {
		s, f := newRetainingStore(t, tc.retention)
		first, second := uuid.New(), uuid.New()
		if bound, claimed, err := s.ClaimIdempotencyKey(t.Context(), "k", first); err != nil || !claimed || bound != first {
			t.Fatalf("first claim: %v %v %v", bound, claimed, err)
		}
		if bound, claimed, err := s.ClaimIdempotencyKey(t.Context(), "k", second); err != nil || claimed || bound != first {
			t.Fatalf("second claim: %v %v %v; want bound to the first", bound, claimed, err)
		}
		f.mu.Lock()
		var ttls []string
		for k, it := range f.items {
			if len(k) > len("idempotency-") && k[:len("idempotency-")] == "idempotency-" {
				ttls = append(ttls, it.ttl)
			}
		}
		f.mu.Unlock()
		if len(ttls) != 1 || ttls[0] != tc.want {
			t.Errorf("retention %v: key expiries %q, want one of %q", tc.retention, ttls, tc.want)
		}
	}
}

func TestLoadRetention(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value   string
		want    time.Duration
		wantErr bool
	}{
		{"", RetentionDefault, false},
		{"1h", time.Hour, false},
		{"0s", 0, false},
		{"-1s", 0, true},
		{"soon", 0, true},
	} {
		r := env.New(func(k string) string {
			if k == "TASK_RETENTION" {
				return tc.value
			}
			return ""
		})
		got := LoadRetention(r)
		if err := r.Err(); (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("TASK_RETENTION=%q: %v, %v; want %v, error %v", tc.value, got, err, tc.want, tc.wantErr)
		}
	}
}

// Wait returns once the expiries on their way are written, or when its context ends.
func TestWaitForExpiries(t *testing.T) {
	t.Parallel()
	s, f := newRetainingStore(t, time.Hour)
	rec := newRecord()
	seed(f, rec)
	release := make(chan struct{})
	f.mu.Lock()
	calls := 0
	f.beforeTx = func() { // the batch's transaction goes; its expiries' is held
		calls++
		if calls == 2 {
			<-release
		}
	}
	f.mu.Unlock()
	s.UpdateMany(t.Context(), []uuid.UUID{rec.ID}, func(r *task.Record) error { r.Status = task.StatusCompleted; return nil })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	s.Wait(ctx)
	if ctx.Err() == nil {
		t.Fatal("Wait returned while the expiry was held")
	}
	if got := ttlOf(f, key(rec.ID)); got != "" {
		t.Fatalf("expiry %q before the held transaction went", got)
	}
	close(release)
	s.Wait(t.Context())
	if got := ttlOf(f, key(rec.ID)); got != "3600" {
		t.Errorf("expiry %q after Wait, want 3600", got)
	}
}

// The expiries of batches that come within expireDelay of one another go in one call.
func TestExpiriesOfBatchesGoTogether(t *testing.T) {
	t.Parallel()
	s, f := newRetainingStore(t, time.Hour)
	a, b := newRecord(), newRecord()
	seed(f, a, b)
	complete := func(r *task.Record) error { r.Status = task.StatusCompleted; return nil }
	s.UpdateMany(t.Context(), []uuid.UUID{a.ID}, complete)
	time.Sleep(expireDelay / 20) // time for a's expiry to go, were it not to wait for others
	s.UpdateMany(t.Context(), []uuid.UUID{b.ID}, complete)
	s.Wait(t.Context())
	expiresIn(t, f, "3600", a.ID, b.ID)
	f.mu.Lock()
	txs := f.txs
	f.mu.Unlock()
	if txs != 3 {
		t.Errorf("%d transactions, want 3: one per batch, and one for both batches' expiries", txs)
	}
}
