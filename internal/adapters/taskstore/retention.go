package taskstore

import (
	"bytes"
	"context"
	"strconv"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/batch"
	"github.com/taskgrid/taskgrid/internal/platform/env"
)

// RetentionDefault is how long a finished task's record is kept by default (TASK_RETENTION).
const RetentionDefault = 24 * time.Hour

// LoadRetention reads TASK_RETENTION, the retention of WithRetention, for the apps that
// write task records (gateway, worker, storekeeper: give them the same value). 0 keeps
// records and idempotency keys for ever.
func LoadRetention(r *env.Reader) time.Duration {
	return r.Duration("TASK_RETENTION", RetentionDefault, 0, 10*365*24*time.Hour)
}

// expireTimeout bounds a call that gives records their expiry.
const expireTimeout = 30 * time.Second

// expireDelay is how long the expiries of the records batches made terminal gather before
// they are written, in one transaction (or a few, of at most txBytes each) for all of
// them: under load the storekeeper's calls each made one of their own, about a record's
// write in ten. A record without its expiry yet is no harm; see Wait for a stopping app.
const expireDelay = time.Second

// expireBatchMax is the number of records whose expiries go at once, without waiting out
// expireDelay: a record may carry a payload of up to InlinePayloadMax, and those waiting
// are held in memory.
const expireBatchMax = 512

// WithRetention makes a record expire d after the write that made it completed, failed or
// cancelled, and an idempotency key d after its claim; 0 keeps both for ever. d is
// rounded up to whole seconds (the store's TTL is in seconds).
//
// The expiry is the state store's ttlInSeconds, and where it goes matters. state.redis
// (components-contrib v1.18.3, Multi) queues a write's EXPIRE after the write's Lua script
// in one MULTI/EXEC, and Redis runs the EXPIRE even when the script refused the write for
// its ETag: a terminal write that lost to another writer inside a transaction would set
// the expiry on the version that won, a task still pending or running, whose later writes
// (HSET) keep it. A single save (Set) returns at the refusal, before any expiry. So:
//
//   - a record written alone (Update) carries its expiry in that save;
//   - a batch (UpdateMany) is written in its transaction without expiries, as before; once
//     it has landed, its terminal records are written again, the same bytes with their
//     expiry, in a transaction of their own with those of the other batches of the moment
//     (afterLanded, expireDelay), off the caller's way. A terminal record is never written
//     again after its terminal write (every transition from a terminal status is refused),
//     so that transaction's EXPIREs land on the versions the batch wrote, whether or not
//     its writes are refused. It names the version the batch wrote, which for state.redis
//     is the ETag read plus one (its script increments the version); should that
//     transaction fail, each record is read and saved again on its own with its expiry;
//   - an idempotency key's claim is a single first-write save, with its expiry.
func WithRetention(d time.Duration) Option {
	return func(s *Store) {
		if d <= 0 {
			s.expire = nil
			return
		}
		secs := int64((d + time.Second - 1) / time.Second)
		s.expire = map[string]string{"ttlInSeconds": strconv.FormatInt(secs, 10)}
		s.expiries = batch.New(context.Background(), expireBatchMax, func(ctx context.Context, ws []pendingWrite) error {
			ctx, cancel := context.WithTimeout(ctx, expireTimeout)
			defer cancel()
			batch.Runs(len(ws), func(j int) int64 { return int64(len(ws[j].data)) }, txBytes, func(from, to int) {
				s.expireWritten(ctx, ws[from:to])
			})
			return nil
		}).Delayed(expireDelay)
	}
}

// writeMeta is the metadata of rec's save when it is made alone: its expiry when the
// save makes it terminal and records expire.
func (s *Store) writeMeta(rec task.Record) map[string]string {
	if s.expire != nil && rec.Status.Terminal() {
		return s.expire
	}
	return nil
}

// afterLanded follows writes that landed in a transaction: it removes the payloads kept
// apart of those that made their record terminal (dropPayloads), and gives those records
// their expiry, in the background, with the others of the moment (see WithRetention and
// expireDelay). A process that stops before that leaves those records without an expiry:
// kept for ever, never lost.
func (s *Store) afterLanded(ctx context.Context, written []pendingWrite) {
	s.dropPayloads(ctx, written)
	if s.expiries == nil {
		return
	}
	for _, w := range written {
		if w.rec.Status.Terminal() {
			s.expiries.Add(pendingWrite{key: w.key, data: w.data, etag: w.etag}) // the bytes, not the record too
		}
	}
}

// Wait writes the expiries on their way (see afterLanded) at once, and those that come
// later too, and waits until they are written or ctx ends: a process that stops calls it
// before it closes its sidecar client.
func (s *Store) Wait(ctx context.Context) {
	if s.expiries == nil {
		return
	}
	s.expiries.Flush()
	for !s.expiries.Idle() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// expireWritten writes the terminal records of written again with their expiry: in one
// transaction naming the versions written, else each on its own with its current ETag
// (a single save sets no expiry on a write it refused).
func (s *Store) expireWritten(ctx context.Context, written []pendingWrite) {
	ops := make([]*dapr.StateOperation, 0, len(written))
	for _, w := range written {
		n, err := strconv.ParseUint(w.etag, 10, 64)
		if err != nil {
			break // not state.redis's versions: each on its own below
		}
		w.etag = strconv.FormatUint(n+1, 10)
		ops = append(ops, &dapr.StateOperation{Type: dapr.StateOperationTypeUpsert, Item: setItem(w, s.expire)})
	}
	if len(ops) == len(written) && s.client.ExecuteStateTransaction(ctx, s.storeName, nil, ops) == nil {
		return
	}
	keys := make([]string, len(written))
	for j, w := range written {
		keys[j] = w.key
	}
	read := make(map[string]*dapr.BulkStateItem, len(keys))
	if err := s.bulkGetKeys(ctx, keys, read); err != nil {
		return // kept for ever: no worse than without a retention
	}
	forEach(len(written), fallbackConcurrency, func(j int) {
		w := written[j]
		if it := read[w.key]; it != nil && it.Error == "" && bytes.Equal(it.Value, w.data) {
			_ = s.client.SaveStateWithETag(ctx, s.storeName, w.key, w.data, it.Etag, s.expire, firstWrite)
		}
	})
}
