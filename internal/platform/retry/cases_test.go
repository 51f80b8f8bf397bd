package retry

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

var errTransient = errors.New("sidecar not ready")

func TestDoCases(t *testing.T) {
	t.Parallel()

	t.Run("first success returns at once", func(t *testing.T) {
		t.Parallel()
		var calls int
		if err := Do(t.Context(), time.Second, func(context.Context) error { calls++; return nil }); err != nil {
			t.Fatalf("retry = %v, want nil", err)
		}
		if calls != 1 {
			t.Errorf("fn called %d times, want 1", calls)
		}
	})

	t.Run("each try gets its own timeout", func(t *testing.T) {
		t.Parallel()
		const timeout = 300 * time.Millisecond
		var calls int
		var deadlines []time.Duration // time left at the start of each try
		start := time.Now()
		err := Do(t.Context(), timeout, func(ctx context.Context) error {
			calls++
			dl, ok := ctx.Deadline()
			if !ok {
				t.Error("try has no deadline")
				return Permanent(errors.New("no deadline"))
			}
			deadlines = append(deadlines, time.Until(dl))
			if calls < 3 {
				<-ctx.Done() // a hung call: only the per-try timeout ends it
				return ctx.Err()
			}
			return nil
		})
		if err != nil {
			t.Fatalf("retry = %v, want nil", err)
		}
		if calls != 3 {
			t.Fatalf("fn called %d times, want 3", calls)
		}
		for i, left := range deadlines {
			// Each try starts with (about) the full timeout: it is per try, not overall.
			if left > timeout {
				t.Errorf("try %d started with %s left, more than the %s per try", i+1, left, timeout)
			}
		}
		// Two hung tries of timeout each, plus the back-off of 50 ms then 100 ms.
		if elapsed, least := time.Since(start), 2*timeout+150*time.Millisecond; elapsed < least {
			t.Errorf("took %s, want at least %s", elapsed, least)
		}
	})

	t.Run("transient errors are retried with back-off", func(t *testing.T) {
		t.Parallel()
		var calls int
		var at []time.Time
		err := Do(t.Context(), time.Second, func(context.Context) error {
			calls++
			at = append(at, time.Now())
			if calls <= 3 {
				return errTransient
			}
			return nil
		})
		if err != nil {
			t.Fatalf("retry = %v, want nil", err)
		}
		if calls != 4 {
			t.Fatalf("fn called %d times, want 4", calls)
		}
		// Back-off doubles from 50 ms: 50, 100, 200.
		for i, want := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
			if gap := at[i+1].Sub(at[i]); gap < want {
				t.Errorf("gap before try %d = %s, want at least %s", i+2, gap, want)
			}
		}
	})

	t.Run("permanent error stops at once, unwrapped", func(t *testing.T) {
		t.Parallel()
		base := errors.New("task not found")
		var calls int
		err := Do(t.Context(), time.Second, func(context.Context) error { calls++; return Permanent(base) })
		if err != base { // the cause itself, not the wrapper that marked it permanent
			t.Fatalf("retry = %#v, want exactly %v", err, base)
		}
		if calls != 1 {
			t.Errorf("fn called %d times, want 1", calls)
		}
	})

	t.Run("permanent after transient errors stops", func(t *testing.T) {
		t.Parallel()
		base := errors.New("stale")
		var calls int
		err := Do(t.Context(), time.Second, func(context.Context) error {
			calls++
			if calls < 3 {
				return errTransient
			}
			return Permanent(base)
		})
		if err != base {
			t.Errorf("retry = %v, want exactly %v", err, base)
		}
		if calls != 3 {
			t.Errorf("fn called %d times, want 3", calls)
		}
	})

	t.Run("cancel stops retrying", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var calls atomic.Int32
		err := Do(ctx, time.Second, func(context.Context) error {
			if calls.Add(1) == 3 {
				cancel()
			}
			return errTransient
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("retry = %v, want context.Canceled", err)
		}
		if !errors.Is(err, errTransient) {
			t.Errorf("retry = %v, want the last error kept", err)
		}
		if n := calls.Load(); n != 3 {
			t.Errorf("fn called %d times, want 3 (no try after the cancel)", n)
		}
	})

	t.Run("cancel interrupts the back-off", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var calls atomic.Int32
		cancelled := make(chan time.Time, 1)
		err := Do(ctx, time.Second, func(context.Context) error {
			// The back-off after try 5 is 800 ms; cancel 20 ms into it.
			if calls.Add(1) == 5 {
				time.AfterFunc(20*time.Millisecond, func() { cancelled <- time.Now(); cancel() })
			}
			return errTransient
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("retry = %v, want context.Canceled", err)
		}
		if n := calls.Load(); n != 5 {
			t.Errorf("fn called %d times, want 5", n)
		}
		// Returning at all proves the back-off was cut short: the wait after try 5
		// would have been followed by try 6, which the count above rules out.
		<-cancelled
	})

	t.Run("ctx deadline bounds the whole retry", func(t *testing.T) {
		t.Parallel()
		start := time.Now() // before the deadline is set: it counts from its own clock reading
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		defer cancel()
		err := Do(ctx, time.Minute, func(ctx context.Context) error {
			if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > 250*time.Millisecond {
				t.Errorf("try deadline exceeds the caller's")
			}
			return errTransient
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("retry = %v, want DeadlineExceeded", err)
		}
		if elapsed := time.Since(start); elapsed < 250*time.Millisecond {
			t.Errorf("took %s, want at least the 250ms budget", elapsed)
		}
	})

	t.Run("cancelled ctx still tries once", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var calls int
		err := Do(ctx, time.Second, func(ctx context.Context) error { calls++; return ctx.Err() })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("retry = %v, want context.Canceled", err)
		}
		if calls != 1 {
			t.Errorf("fn called %d times, want 1", calls)
		}
	})
}
