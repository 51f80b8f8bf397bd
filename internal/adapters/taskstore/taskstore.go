// Package taskstore keeps task records in the Dapr state store, shared by the gateway,
// worker and storekeeper. Every write uses first-write concurrency: creating a record
// succeeds only when it does not exist, and an update succeeds only with the ETag of
// the version it read, so concurrent writers never lose each other's changes.
package taskstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/batch"
)

// Errors.
var (
	ErrNotFound = errors.New("task not found")
	ErrExists   = errors.New("already exists")
	// ErrNoChange is returned by an update function that leaves the record as it is.
	ErrNoChange = errors.New("no change")
)

// StateClient is the part of the Dapr client the store uses.
type StateClient interface {
	GetState(ctx context.Context, storeName, key string, meta map[string]string) (*dapr.StateItem, error)
	SaveStateWithETag(ctx context.Context, storeName, key string, data []byte, etag string, meta map[string]string, so ...dapr.StateOption) error
	DeleteState(ctx context.Context, storeName, key string, meta map[string]string) error
	// The batched paths (UpdateMany, CreateMany): one sidecar call for many records.
	GetBulkState(ctx context.Context, storeName string, keys []string, meta map[string]string, parallelism int32) ([]*dapr.BulkStateItem, error)
	ExecuteStateTransaction(ctx context.Context, storeName string, meta map[string]string, ops []*dapr.StateOperation) error
}

// Store reads and writes task records in one state store.
type Store struct {
	client    StateClient
	storeName string
	expire    map[string]string            // the metadata of a write that expires (nil: nothing expires)
	expiries  *batch.Batcher[pendingWrite] // terminal records on their way to their expiry (see afterLanded)
}

// Option configures a Store.
type Option func(*Store)

// New returns a Store over the state store called storeName.
func New(client StateClient, storeName string, opts ...Option) *Store {
	s := &Store{client: client, storeName: storeName}
	for _, o := range opts {
		o(s)
	}
	return s
}

func recordKey(id uuid.UUID) string { return "task-" + id.String() }

// InlinePayloadMax is the largest payload a record carries itself. A larger one is
// stored under a key of its own (Record.PayloadKey), written once with the record and
// read only by the worker that computes the task (Payload): every other use of the
// record (its starts, completions, cancels and views, the storekeeper's batches) reads
// and writes a few hundred bytes instead of the payload's megabytes.
const InlinePayloadMax = 64 << 10

// payloadKey names the key of a payload kept apart from its record, by task and
// content: a keyed retry that stores its own payload under an id bound already (see
// the gateway's Submit) never changes the payload a stored record refers to.
func payloadKey(id uuid.UUID, payload []byte) string {
	sum := sha256.Sum256(payload)
	return "payload-" + id.String() + "-" + hex.EncodeToString(sum[:8])
}

// splitPayload returns rec as it is stored, and the item its payload is stored as when
// that is over InlinePayloadMax (nil otherwise).
func splitPayload(rec task.Record) (task.Record, *dapr.SetStateItem) {
	if len(rec.Payload) <= InlinePayloadMax {
		return rec, nil
	}
	item := &dapr.SetStateItem{Key: payloadKey(rec.ID, rec.Payload), Value: rec.Payload}
	rec.Payload, rec.PayloadKey = nil, item.Key
	return rec, item
}

var firstWrite = dapr.WithConcurrency(dapr.StateConcurrencyFirstWrite)

// insert writes key only when it does not exist yet, with meta.
func (s *Store) insert(ctx context.Context, key string, data []byte, meta map[string]string) error {
	err := s.client.SaveStateWithETag(ctx, s.storeName, key, data, "", meta, firstWrite)
	if err == nil {
		return nil
	}
	// The store reports "exists" and other failures alike: look.
	item, gerr := s.client.GetState(ctx, s.storeName, key, nil)
	if gerr == nil && item != nil && len(item.Value) > 0 {
		return ErrExists
	}
	return fmt.Errorf("save %s: %w", key, err)
}

// Create stores a new record; ErrExists when its id is taken. A payload over
// InlinePayloadMax is stored first, under its own key: a record is never stored without
// its payload (a payload may be, when the record's write fails).
func (s *Store) Create(ctx context.Context, rec task.Record) error {
	rec, payload := splitPayload(rec)
	if payload != nil {
		if err := s.client.SaveStateWithETag(ctx, s.storeName, payload.Key, payload.Value, "", nil); err != nil {
			return fmt.Errorf("create task %s: save its payload: %w", rec.ID, err)
		}
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode task %s: %w", rec.ID, err)
	}
	if err := s.insert(ctx, recordKey(rec.ID), data, nil); err != nil {
		return fmt.Errorf("create task %s: %w", rec.ID, err)
	}
	return nil
}

// Get returns the record of id and its ETag; ErrNotFound when there is none.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (task.Record, string, error) {
	item, err := s.client.GetState(ctx, s.storeName, recordKey(id), nil)
	if err != nil {
		return task.Record{}, "", fmt.Errorf("get task %s: %w", id, err)
	}
	if item == nil || len(item.Value) == 0 {
		return task.Record{}, "", fmt.Errorf("get task %s: %w", id, ErrNotFound)
	}
	var rec task.Record
	if err := json.Unmarshal(item.Value, &rec); err != nil {
		return task.Record{}, "", fmt.Errorf("decode task %s: %w", id, err)
	}
	return rec, item.Etag, nil
}

// MaxUpdateTries bounds the read-modify-write retries of Update under contention.
const MaxUpdateTries = 20

// Update reads record id, applies fn and writes it back if its ETag still matches,
// retrying on a conflict. fn returning ErrNoChange ends without writing (changed=false);
// any other error from fn ends with that error.
func (s *Store) Update(ctx context.Context, id uuid.UUID, fn func(*task.Record) error) (rec task.Record, changed bool, err error) {
	rec, changed, err = s.update(ctx, id, fn)
	if errors.Is(err, ErrNoChange) {
		return rec, false, nil
	}
	return rec, changed, err
}

// update is Update, except that fn's ErrNoChange is returned as it is (UpdateMany
// reports what fn said for every record).
func (s *Store) update(ctx context.Context, id uuid.UUID, fn func(*task.Record) error) (task.Record, bool, error) {
	for range MaxUpdateTries {
		rec, etag, err := s.Get(ctx, id)
		if err != nil {
			return rec, false, err
		}
		if err := fn(&rec); err != nil {
			return rec, false, err
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return rec, false, fmt.Errorf("encode task %s: %w", id, err)
		}
		err = s.client.SaveStateWithETag(ctx, s.storeName, recordKey(id), data, etag, s.writeMeta(rec), firstWrite)
		if err == nil {
			s.dropPayloads(ctx, []pendingWrite{{rec: rec}})
			return rec, true, nil
		}
		if status.Code(err) != codes.Aborted { // Aborted is an ETag mismatch: another writer won
			return rec, false, fmt.Errorf("update task %s: %w", id, err)
		}
	}
	return task.Record{}, false, fmt.Errorf("update task %s: still conflicting after %d tries", id, MaxUpdateTries)
}

// ClaimIdempotencyKey binds key to id unless key is bound already; it returns the id
// the key is bound to and whether this call bound it. With a retention (WithRetention)
// the binding expires that long after its claim: never after its task's record, which
// expires that long after the task ended (a key that outlived its record would have its
// retry find no record and store the task again).
func (s *Store) ClaimIdempotencyKey(ctx context.Context, key string, id uuid.UUID) (uuid.UUID, bool, error) {
	sum := sha256.Sum256([]byte(key))
	k := "idempotency-" + hex.EncodeToString(sum[:])
	err := s.insert(ctx, k, []byte(`"`+id.String()+`"`), s.expire)
	if err == nil {
		return id, true, nil
	}
	if !errors.Is(err, ErrExists) {
		return uuid.Nil, false, fmt.Errorf("claim idempotency key: %w", err)
	}
	item, err := s.client.GetState(ctx, s.storeName, k, nil)
	if err != nil || item == nil {
		return uuid.Nil, false, fmt.Errorf("read idempotency key: %w", err)
	}
	var bound uuid.UUID
	if err := json.Unmarshal(item.Value, &bound); err != nil {
		return uuid.Nil, false, fmt.Errorf("decode idempotency key: %w", err)
	}
	return bound, false, nil
}

// dropPayloads removes the payloads kept apart of the records among written that were just
// written terminal (completed, failed or cancelled): no attempt reads them again. It
// comes after their write has landed, in a call of its own, because Dapr's Redis store
// does not roll a transaction back: a delete beside a record's write refused for its
// ETag would be applied all the same, and take the payload of a task that still runs.
// A removal that fails leaves the payload stored (nothing reads it).
func (s *Store) dropPayloads(ctx context.Context, written []pendingWrite) {
	var ops []*dapr.StateOperation
	for _, w := range written {
		if w.rec.PayloadKey != "" && w.rec.Status.Terminal() {
			ops = append(ops, &dapr.StateOperation{Type: dapr.StateOperationTypeDelete, Item: &dapr.SetStateItem{Key: w.rec.PayloadKey}})
		}
	}
	if len(ops) > 0 {
		_ = s.client.ExecuteStateTransaction(ctx, s.storeName, nil, ops)
	}
}

// Payload returns the payload of rec: its own, or the one stored apart from it
// (ErrNotFound when that is missing).
func (s *Store) Payload(ctx context.Context, rec task.Record) (json.RawMessage, error) {
	if rec.PayloadKey == "" {
		return rec.Payload, nil
	}
	item, err := s.client.GetState(ctx, s.storeName, rec.PayloadKey, nil)
	if err != nil {
		return nil, fmt.Errorf("get payload of task %s: %w", rec.ID, err)
	}
	if item == nil || len(item.Value) == 0 {
		return nil, fmt.Errorf("get payload of task %s: %w", rec.ID, ErrNotFound)
	}
	return item.Value, nil
}

// Delete removes rec's record, then its payload when stored apart (a task that was
// refused after its record was written).
func (s *Store) Delete(ctx context.Context, rec task.Record) error {
	if err := s.client.DeleteState(ctx, s.storeName, recordKey(rec.ID), nil); err != nil {
		return fmt.Errorf("delete task %s: %w", rec.ID, err)
	}
	stored, _ := splitPayload(rec) // rec as stored, or as given to Create
	if stored.PayloadKey == "" {
		return nil
	}
	if err := s.client.DeleteState(ctx, s.storeName, stored.PayloadKey, nil); err != nil {
		return fmt.Errorf("delete the payload of task %s: %w", rec.ID, err)
	}
	return nil
}
