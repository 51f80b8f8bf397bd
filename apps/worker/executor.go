package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/taskgrid/taskgrid/internal/domain/catalog"
)

// Failure kinds of an attempt.
const (
	FailureError   = "error"   // the task code returned an error
	FailurePanic   = "panic"   // the task code panicked
	FailureTimeout = "timeout" // the attempt ran past its time limit
	FailureForced  = "forced"  // forceFailure: the first k attempts fail on purpose
	FailureInvalid = "invalid" // the payload no longer validates (catalog changed)
	FailureUnread  = "unread"  // the payload, stored apart from its record, could not be read
	// FailureCancelled is not a failure: the attempt was stopped because its task was
	// cancelled. It only labels the attempt in taskgrid_worker_attempts_total.
	FailureCancelled = "cancelled"
)

// AbandonGraceDefault is how long past its time limit an attempt that ignores
// cancellation is waited for before it is abandoned (and counted as timed out).
const AbandonGraceDefault = 2 * time.Second

// Outcome of one attempt.
type Outcome struct {
	Result   catalog.Result
	Failure  string // "" on success, else one of the Failure* kinds
	Err      error
	Duration time.Duration
}

// Executor runs task code. It has no Dapr dependency.
type Executor struct {
	Catalog *catalog.Registry
	// AbandonGrace: see AbandonGraceDefault.
	AbandonGrace time.Duration
}

// Execute runs attempt number attempt of a task of type typ. It recovers panics,
// enforces the time limit (the type's, or the payload's timeLimitMs), and returns at the
// latest AbandonGrace after the limit even if the task code ignores cancellation.
func (e *Executor) Execute(ctx context.Context, typ string, payload json.RawMessage, attempt int, progress catalog.ProgressFunc) Outcome {
	start := time.Now()
	job, opts, err := e.Catalog.Prepare(typ, payload)
	if err != nil {
		return Outcome{Failure: FailureInvalid, Err: fmt.Errorf("prepare %s: %w", typ, err), Duration: time.Since(start)}
	}
	if attempt <= opts.ForceFailure {
		return Outcome{Failure: FailureForced, Err: fmt.Errorf("forced failure of attempt %d of %d", attempt, opts.ForceFailure), Duration: time.Since(start)}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.TimeLimit)
	defer cancel()

	done := make(chan Outcome, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- Outcome{Failure: FailurePanic, Err: fmt.Errorf("panic: %v\n%s", p, debug.Stack())}
			}
		}()
		res, err := job.Run(ctx, progress)
		switch {
		case err == nil:
			done <- Outcome{Result: res}
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
			done <- Outcome{Failure: FailureTimeout, Err: fmt.Errorf("ran past its time limit of %s", opts.TimeLimit)}
		default:
			done <- Outcome{Failure: FailureError, Err: err}
		}
	}()

	grace := e.AbandonGrace
	if grace == 0 {
		grace = AbandonGraceDefault
	}
	var out Outcome
	select {
	case out = <-done:
	case <-ctx.Done():
		select {
		case out = <-done:
		case <-time.After(grace):
			out = Outcome{Failure: FailureTimeout, Err: fmt.Errorf("ran past its time limit of %s and ignored cancellation; abandoned", opts.TimeLimit)}
		}
	}
	if out.Failure == "" && ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		out = Outcome{Failure: FailureTimeout, Err: fmt.Errorf("ran past its time limit of %s", opts.TimeLimit)}
	}
	out.Duration = time.Since(start)
	return out
}
