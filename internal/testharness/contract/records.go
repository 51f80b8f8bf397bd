// Package contract holds test suites that a port's fake and its real adapter must both
// pass: the unit tests run them against the fakes, the integration tests against the
// real sidecars, so a fake cannot drift from what Dapr does.
package contract

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// Records is the task-record port as the worker and the storekeeper use it, plus a way
// to put records in.
type Records interface {
	Create(ctx context.Context, rec task.Record) error
	UpdateMany(ctx context.Context, ids []uuid.UUID, fn func(*task.Record) error) []taskstore.Result
	Payload(ctx context.Context, rec task.Record) (json.RawMessage, error)
}

// TestRecords runs the contract of Records on s.
func TestRecords(t *testing.T, s Records) {
	ctx := t.Context()
	now := time.Now()
	mk := func() task.Record {
		rec, _ := task.Accept(task.Record{ID: uuid.New(), Type: "noop", Directory: "contract", MaxAttempts: 3}, now)
		if err := s.Create(ctx, rec); err != nil {
			t.Fatalf("create: %v", err)
		}
		return rec
	}
	a, b, c := mk(), mk(), mk()
	missing := uuid.New()
	start := func(r *task.Record) error {
		next, _, err := task.Start(*r, task.Assignment{TaskID: r.ID, Attempt: 1, Priority: task.PriorityNormal}, task.Worker{Node: "n", Slot: "n-0"}, now)
		if err != nil {
			return err
		}
		*r = next
		return nil
	}

	t.Run("each record gets its own outcome", func(t *testing.T) {
		res := s.UpdateMany(ctx, []uuid.UUID{a.ID, missing, b.ID, c.ID}, func(r *task.Record) error {
			if r.ID == b.ID {
				return task.ErrStale // refused: nothing written for b
			}
			return start(r)
		})
		if len(res) != 4 {
			t.Fatalf("%d results for 4 ids", len(res))
		}
		if !res[0].Changed || res[0].Err != nil || res[0].Record.Status != task.StatusRunning {
			t.Errorf("a: %+v", res[0])
		}
		if res[1].Changed || !errors.Is(res[1].Err, taskstore.ErrNotFound) {
			t.Errorf("missing: %+v, want ErrNotFound", res[1])
		}
		if res[2].Changed || !errors.Is(res[2].Err, task.ErrStale) || res[2].Record.Status != task.StatusPending {
			t.Errorf("b: %+v, want refused with ErrStale and the record as read", res[2])
		}
		if !res[3].Changed || res[3].Record.Status != task.StatusRunning {
			t.Errorf("c: %+v", res[3])
		}
	})

	t.Run("what was written is what is read next", func(t *testing.T) {
		res := s.UpdateMany(ctx, []uuid.UUID{a.ID, b.ID}, func(*task.Record) error { return task.ErrNoChange })
		if res[0].Record.Status != task.StatusRunning || res[0].Record.Worker != "n/n-0" || res[1].Record.Status != task.StatusPending {
			t.Errorf("read back a %+v, b %+v", res[0].Record, res[1].Record)
		}
		// The state machine refuses starting a twice: the store passes the refusal on.
		again := s.UpdateMany(ctx, []uuid.UUID{a.ID}, start)
		if again[0].Changed || !errors.Is(again[0].Err, task.ErrStale) {
			t.Errorf("second start of a: %+v, want ErrStale", again[0])
		}
	})

	t.Run("a payload is read back whole from the record read, however large", func(t *testing.T) {
		for _, payload := range []json.RawMessage{
			json.RawMessage(`{"n":1}`),
			json.RawMessage(`{"d":"` + strings.Repeat("x", taskstore.InlinePayloadMax) + `"}`),
		} {
			rec, _ := task.Accept(task.Record{ID: uuid.New(), Type: "hash", Payload: payload, Directory: "contract", MaxAttempts: 3}, now)
			if err := s.Create(ctx, rec); err != nil {
				t.Fatalf("create with a payload of %d bytes: %v", len(payload), err)
			}
			res := s.UpdateMany(ctx, []uuid.UUID{rec.ID}, start)
			if res[0].Err != nil {
				t.Fatalf("start: %v", res[0].Err)
			}
			got, err := s.Payload(ctx, res[0].Record)
			if err != nil || string(got) != string(payload) {
				t.Errorf("payload of %d bytes read back as %d bytes, %v", len(payload), len(got), err)
			}
		}
	})

	t.Run("an id twice is updated twice, in order", func(t *testing.T) {
		res := s.UpdateMany(ctx, []uuid.UUID{b.ID, b.ID}, func(r *task.Record) error {
			r.Progress += 0.25
			return nil
		})
		if !res[0].Changed || !res[1].Changed || res[1].Record.Progress != 0.5 {
			t.Errorf("twice: %+v then %+v, want progress 0.25 then 0.5", res[0].Record.Progress, res[1].Record.Progress)
		}
	})
}
