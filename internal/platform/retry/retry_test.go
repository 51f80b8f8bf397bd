package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	t.Parallel()
	errTemp, errFatal := errors.New("temporary"), errors.New("fatal")
	tests := []struct {
		name      string
		fails     int   // tries that fail with errTemp before the outcome
		outcome   error // returned after the failures (nil: success)
		budget    time.Duration
		wantErr   error
		wantTries int
	}{
		{"first try", 0, nil, time.Minute, nil, 1},
		{"after failures", 3, nil, time.Minute, nil, 4},
		{"permanent stops at once", 1, Permanent(errFatal), time.Minute, errFatal, 2},
		{"context ends", 1 << 30, nil, 300 * time.Millisecond, context.DeadlineExceeded, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), tt.budget)
			defer cancel()
			tries := 0
			err := Do(ctx, time.Second, func(context.Context) error {
				tries++
				if tries <= tt.fails {
					return errTemp
				}
				return tt.outcome
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantTries >= 0 && tries != tt.wantTries {
				t.Fatalf("tries = %d, want %d", tries, tt.wantTries)
			}
			if tt.wantErr == context.DeadlineExceeded && !errors.Is(err, errTemp) {
				t.Fatalf("err = %v, want it to carry the last error", err)
			}
		})
	}
}

// Each try gets its own deadline, shorter than the caller's.
func TestEachTryIsBounded(t *testing.T) {
	t.Parallel()
	tries := 0
	err := Do(t.Context(), 20*time.Millisecond, func(ctx context.Context) error {
		tries++
		if tries == 1 {
			<-ctx.Done() // a call that would hang forever without the bound
			return ctx.Err()
		}
		return nil
	})
	if err != nil || tries != 2 {
		t.Fatalf("err = %v after %d tries, want success on the second", err, tries)
	}
}
