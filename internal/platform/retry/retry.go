// Package retry runs calls to the sidecar until they succeed, with a bound on each try.
//
// Every try needs a bound: an actor call in flight holds a claim that blocks Dapr's
// placement dissemination (a gateway or worker joining or leaving) until it returns, so
// a call parked on an actor type that is being moved would stall the whole cluster.
package retry

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backoff bounds between tries.
const (
	FirstWait = 50 * time.Millisecond
	MaxWait   = 2 * time.Second
)

type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

// Permanent marks err as not worth another try: Do returns it (unwrapped) at once.
func Permanent(err error) error { return permanentError{err} }

// Do runs fn, each try bounded by try, until it succeeds, returns a Permanent error, or
// ctx ends, backing off from FirstWait to MaxWait between tries.
func Do(ctx context.Context, try time.Duration, fn func(ctx context.Context) error) error {
	wait := FirstWait
	for {
		tctx, cancel := context.WithTimeout(ctx, try)
		err := fn(tctx)
		cancel()
		if err == nil {
			return nil
		}
		var p permanentError
		if errors.As(err, &p) {
			return p.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, MaxWait)
	}
}
