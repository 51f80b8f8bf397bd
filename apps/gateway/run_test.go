package main

import (
	"context"
	"errors"
	"testing"
)

// The queue check fails until the queue answers once, and passes from then on without
// calling it again, even when it stops answering (a placement outage is met by fail-fast
// submissions, not by leaving service).
func TestQueueReached(t *testing.T) {
	t.Parallel()
	var calls int
	answers := []error{errors.New("no placement table yet"), errors.New("still none"), nil, errors.New("placement down")}
	check := queueReached(func(context.Context) error {
		err := answers[calls]
		calls++
		return err
	})
	for i, want := range []bool{false, false, true, true, true} {
		if got := check(t.Context()) == nil; got != want {
			t.Fatalf("check %d passed = %v, want %v", i, got, want)
		}
	}
	if calls != 3 {
		t.Errorf("the queue was called %d times, want 3 (none once reached)", calls)
	}
}
