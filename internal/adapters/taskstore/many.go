package taskstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/batch"
)

// The batched paths: a batch of records costs one GetBulkState and one state
// transaction, two sidecar calls whatever its count, instead of two per record (large
// payloads take more: see txBytes and bulkGetKeys), and with a retention a third, after
// it and off the caller's way, when it made records terminal (see WithRetention).
//
// What a transaction guarantees depends on the store, and state.redis (components-contrib
// v1.18.3, state/redis/redis.go, Multi) guarantees little: it queues one Lua script per
// operation in a MULTI/EXEC pipeline and Redis does not roll back. A write whose ETag no
// longer matches fails alone (its script raises an error before writing anything) while
// every other write of the transaction is applied, and the call still fails. So after a
// failed transaction UpdateMany reads which of its writes landed before it retries any.

// Result is what UpdateMany did to one record.
type Result struct {
	// Record is the record after the call: the version written when Changed, otherwise
	// the version read (zero when none could be read).
	Record task.Record
	// Changed reports that this call wrote the record.
	Changed bool
	// Err is fn's error when fn refused the change (ErrNoChange, task.ErrNoChange,
	// task.ErrStale or any other; nothing was written), or why the record could not be
	// read or written: ErrNotFound when there is no record. Match it with errors.Is.
	Err error
}

// fallbackConcurrency bounds the per-record Updates that settle a failed transaction.
const fallbackConcurrency = 32

// txBytes bounds the values of one state transaction: a new task's payload kept apart
// (up to 16 MiB) goes in CreateMany's transaction, and a record stored by an earlier
// version carries its payload inline; a batch of such values in one call would pass the
// sidecar's message limit (sidecar.MaxMessageBytes) and be refused whole, however often
// it was tried. A batch goes in transactions of at most txBytes each (a larger value
// alone), one after another (batch.Runs).
const txBytes = 16 << 20

// UpdateMany is Update for many records at once, one Result per id, in order: one
// GetBulkState reads them all, fn is applied to each, and one transaction writes every
// changed record under first-write concurrency with the ETag it was read with, so a
// concurrent writer is never overwritten. When the transaction fails, the writes that
// did not land go through Update one by one (concurrently), which re-reads the record
// and applies fn to the current version: each Result says exactly what became of its
// record. fn may be called concurrently for different records, and more than once for
// one record (on a conflict); it must depend on nothing but the record it is given.
//
// An id listed twice is updated twice, the second time on what the first made, as two
// consecutive Updates would (the repeat costs its own calls).
func (s *Store) UpdateMany(ctx context.Context, ids []uuid.UUID, fn func(*task.Record) error) []Result {
	return s.UpdateManyRead(ctx, ids, Prefetched{}, fn)
}

// Prefetched is a read of task records taken ahead of their update (Prefetch), so that
// the read overlaps other work: the storekeeper writes its result files meanwhile.
type Prefetched struct {
	items map[string]*dapr.BulkStateItem // by key; nil: nothing read
}

// Prefetch reads the records of ids in one call, for UpdateManyRead. A read that fails
// is no error here: UpdateManyRead reads again.
func (s *Store) Prefetch(ctx context.Context, ids []uuid.UUID) Prefetched {
	if len(ids) == 0 {
		return Prefetched{items: map[string]*dapr.BulkStateItem{}} // nothing to read: no call
	}
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	items, err := s.bulkGet(ctx, ids, idx)
	if err != nil {
		return Prefetched{}
	}
	for _, id := range ids { // a key the answer leaves out does not exist
		if k := recordKey(id); items[k] == nil {
			items[k] = &dapr.BulkStateItem{Key: k}
		}
	}
	return Prefetched{items: items}
}

// UpdateManyRead is UpdateMany starting from the records in read, taken by Prefetch
// before: the records it lacks (or all, when the read failed) are read now. A record
// changed since the read is found by its ETag, as any concurrent change is, and updated
// again from its current version.
func (s *Store) UpdateManyRead(ctx context.Context, ids []uuid.UUID, read Prefetched, fn func(*task.Record) error) []Result {
	results := make([]Result, len(ids))
	fn = keepOnError(fn)
	first, repeats := splitRepeats(ids)
	s.updateBatch(ctx, ids, first, fn, results, read)
	for _, i := range repeats {
		rec, changed, err := s.update(ctx, ids[i], fn)
		results[i] = Result{Record: rec, Changed: changed, Err: err}
	}
	return results
}

// keepOnError gives fn a copy of the record and keeps what fn made of it only when fn
// accepts the change, so a refused change leaves the record as it was read.
func keepOnError(fn func(*task.Record) error) func(*task.Record) error {
	return func(rec *task.Record) error {
		next := *rec
		if err := fn(&next); err != nil {
			return err
		}
		*rec = next
		return nil
	}
}

// splitRepeats returns the indexes of the first occurrence of each id and those of
// the later occurrences, both in order.
func splitRepeats(ids []uuid.UUID) (first, repeats []int) {
	seen := make(map[uuid.UUID]bool, len(ids))
	for i, id := range ids {
		if seen[id] {
			repeats = append(repeats, i)
			continue
		}
		seen[id] = true
		first = append(first, i)
	}
	return first, repeats
}

// pendingWrite is a changed record on its way to the store.
type pendingWrite struct {
	i    int // index into ids and results
	key  string
	rec  task.Record
	data []byte
	etag string
}

// updateBatch updates the records ids[i] for every i in idx (distinct ids), from read
// when it has them all.
func (s *Store) updateBatch(ctx context.Context, ids []uuid.UUID, idx []int, fn func(*task.Record) error, results []Result, read Prefetched) {
	if len(idx) == 0 {
		return
	}
	items, err := read.items, error(nil)
	if !read.covers(ids, idx) {
		items, err = s.bulkGet(ctx, ids, idx)
	}
	if err != nil {
		for _, i := range idx {
			results[i].Err = fmt.Errorf("get task %s: %w", ids[i], err)
		}
		return
	}
	var writes []pendingWrite
	for _, i := range idx {
		rec, etag, err := decodeItem(ids[i], items[recordKey(ids[i])])
		if err != nil {
			results[i].Err = err
			continue
		}
		results[i].Record = rec
		if err := fn(&rec); err != nil {
			results[i].Err = err
			continue
		}
		data, err := json.Marshal(rec)
		if err != nil {
			results[i].Err = fmt.Errorf("encode task %s: %w", ids[i], err)
			continue
		}
		writes = append(writes, pendingWrite{i: i, key: recordKey(ids[i]), rec: rec, data: data, etag: etag})
	}
	batch.Runs(len(writes), func(j int) int64 { return int64(len(writes[j].data)) }, txBytes, func(from, to int) {
		part := writes[from:to]
		if err := s.client.ExecuteStateTransaction(ctx, s.storeName, nil, updateOps(part)); err != nil {
			s.settle(ctx, ids, part, fn, results, err)
			return
		}
		for _, w := range part {
			results[w.i] = Result{Record: w.rec, Changed: true}
		}
		s.afterLanded(ctx, part)
	})
}

// covers reports whether p holds the records ids[i] for every i in idx.
func (p Prefetched) covers(ids []uuid.UUID, idx []int) bool {
	if p.items == nil {
		return false
	}
	for _, i := range idx {
		if _, ok := p.items[recordKey(ids[i])]; !ok {
			return false
		}
	}
	return true
}

// bulkGet reads the records ids[i], i in idx, in one call, by key.
func (s *Store) bulkGet(ctx context.Context, ids []uuid.UUID, idx []int) (map[string]*dapr.BulkStateItem, error) {
	keys := make([]string, len(idx))
	for j, i := range idx {
		keys[j] = recordKey(ids[i])
	}
	byKey := make(map[string]*dapr.BulkStateItem, len(keys))
	return byKey, s.bulkGetKeys(ctx, keys, byKey)
}

// bulkGetKeys reads keys into byKey. A read whose answer is too large for one message
// (records stored with large payloads inline: codes.ResourceExhausted) is read again in two
// halves: the sizes of records are not known before they are read, and most batches
// of them fit in one call.
func (s *Store) bulkGetKeys(ctx context.Context, keys []string, byKey map[string]*dapr.BulkStateItem) error {
	// Parallelism 0: the sidecar reads all keys at once.
	items, err := s.client.GetBulkState(ctx, s.storeName, keys, nil, 0)
	if status.Code(err) == codes.ResourceExhausted && len(keys) > 1 {
		half := len(keys) / 2
		if err := s.bulkGetKeys(ctx, keys[:half], byKey); err != nil {
			return err
		}
		return s.bulkGetKeys(ctx, keys[half:], byKey)
	}
	if err != nil {
		return err
	}
	for _, it := range items {
		if it != nil {
			byKey[it.Key] = it
		}
	}
	return nil
}

// decodeItem reads the record of id from its bulk item; a missing item or an empty
// value (how the sidecar answers for a key that does not exist) is ErrNotFound.
func decodeItem(id uuid.UUID, it *dapr.BulkStateItem) (task.Record, string, error) {
	if it != nil && it.Error != "" {
		return task.Record{}, "", fmt.Errorf("get task %s: %w", id, errors.New(it.Error))
	}
	if it == nil || len(it.Value) == 0 {
		return task.Record{}, "", fmt.Errorf("get task %s: %w", id, ErrNotFound)
	}
	var rec task.Record
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return task.Record{}, "", fmt.Errorf("decode task %s: %w", id, err)
	}
	return rec, it.Etag, nil
}

func updateOps(writes []pendingWrite) []*dapr.StateOperation {
	ops := make([]*dapr.StateOperation, len(writes))
	for j, w := range writes {
		ops[j] = &dapr.StateOperation{Type: dapr.StateOperationTypeUpsert, Item: setItem(w, nil)}
	}
	return ops
}

// setItem is w as a first-write save with the ETag it was read with, and meta.
func setItem(w pendingWrite, meta map[string]string) *dapr.SetStateItem {
	item := &dapr.SetStateItem{
		Key: w.key, Value: w.data, Metadata: meta,
		Options: &dapr.StateOptions{Concurrency: dapr.StateConcurrencyFirstWrite},
	}
	if w.etag != "" { // as SaveStateWithETag: no ETag rather than an empty one
		item.Etag = &dapr.ETag{Value: w.etag}
	}
	return item
}

// settle finds out what became of the writes of a failed transaction. A write whose
// bytes are stored landed (state.redis applies the rest of a transaction in which one
// write conflicted); the others go through Update, which applies fn to the current
// version. Applying fn again to a record that has its write already would report the
// wrong change (or make it twice), hence the read first.
//
// One race is left: a record whose write landed and that another writer changed again
// before the read is taken for not landed, and fn is applied to the newer version. The
// state machine's transitions refuse a step taken already (task.ErrNoChange), so for
// them only Changed is wrong then.
func (s *Store) settle(ctx context.Context, ids []uuid.UUID, writes []pendingWrite, fn func(*task.Record) error, results []Result, txErr error) {
	idx := make([]int, len(writes))
	for j, w := range writes {
		idx[j] = w.i
	}
	items, err := s.bulkGet(ctx, ids, idx)
	if err != nil {
		// The writes may or may not have landed, as after any write whose answer was lost.
		for _, w := range writes {
			results[w.i].Err = fmt.Errorf("update task %s: transaction failed (%v), and reading back what it wrote failed: %w", ids[w.i], txErr, err)
		}
		return
	}
	var retry []int
	var landed []pendingWrite
	for _, w := range writes {
		it := items[w.key]
		switch {
		case it != nil && it.Error != "":
			results[w.i].Err = fmt.Errorf("update task %s: transaction failed (%v), and reading back what it wrote failed: %s", ids[w.i], txErr, it.Error)
		case it != nil && bytes.Equal(it.Value, w.data):
			results[w.i] = Result{Record: w.rec, Changed: true}
			landed = append(landed, w)
		default:
			retry = append(retry, w.i)
		}
	}
	s.afterLanded(ctx, landed)
	// A write that did not land is made again by Update, which gives a terminal one its
	// expiry in the same single save (see WithRetention).
	forEach(len(retry), fallbackConcurrency, func(j int) {
		i := retry[j]
		rec, changed, err := s.update(ctx, ids[i], fn)
		results[i] = Result{Record: rec, Changed: changed, Err: err}
	})
}

// forEach calls f(0), ..., f(n-1), at most limit at a time, and returns once all returned.
func forEach(n, limit int, f func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// CreateMany stores new records in one transaction, or in several of at most txBytes.
//
// Unlike Create it does not check that the ids are free: the writes are plain upserts.
// First-write concurrency with an empty ETag does not mean "insert only if absent"
// inside a state.redis transaction: Multi passes the script no ETag ("0") and not the
// first-write flag, and the script then overwrites any existing key except one that a
// single first-write save marked (a hash field "first-write"); that one refuses alone,
// while the rest of the transaction is applied. The ids are fresh UUIDs (uuid.New), so
// no record is overwritten. A failed call may have stored some of the records (no
// rollback); storing them again is harmless.
func (s *Store) CreateMany(ctx context.Context, recs []task.Record) error {
	if len(recs) == 0 {
		return nil
	}
	ops := make([]*dapr.StateOperation, 0, len(recs))
	seen := make(map[uuid.UUID]bool, len(recs))
	for _, rec := range recs {
		if seen[rec.ID] {
			return fmt.Errorf("create %d tasks: task %s listed twice", len(recs), rec.ID)
		}
		seen[rec.ID] = true
		rec, payload := splitPayload(rec)
		if payload != nil { // ahead of its record: the transactions go in order
			ops = append(ops, &dapr.StateOperation{Type: dapr.StateOperationTypeUpsert, Item: payload})
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode task %s: %w", rec.ID, err)
		}
		ops = append(ops, &dapr.StateOperation{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: recordKey(rec.ID), Value: data}})
	}
	var err error
	batch.Runs(len(ops), func(i int) int64 { return int64(len(ops[i].Item.Value)) }, txBytes, func(from, to int) {
		if err == nil {
			err = s.client.ExecuteStateTransaction(ctx, s.storeName, nil, ops[from:to])
		}
	})
	if err != nil {
		return fmt.Errorf("create %d tasks: %w", len(recs), err)
	}
	return nil
}
