package batch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// A lone request goes at once, alone.
func TestLoneRequestGoesAtOnce(t *testing.T) {
	var calls [][]int
	b := New(t.Context(), 0, func(_ context.Context, items []int) error {
		calls = append(calls, items)
		return nil
	})
	if err := b.Do(t.Context(), 7); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || !slices.Equal(calls[0], []int{7}) {
		t.Fatalf("calls = %v, want [[7]]", calls)
	}
}

// Requests that arrive while a call is in flight go together in the next call, up to
// max, each exactly once, and each caller gets its call's error.
func TestRequestsGatherWhileACallIsInFlight(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var calls [][]int
	failOn := 3
	b := New(t.Context(), 4, func(_ context.Context, items []int) error {
		mu.Lock()
		calls = append(calls, items)
		first := len(calls) == 1
		mu.Unlock()
		if first {
			<-release // hold the first call until the rest are pending
		}
		if slices.Contains(items, failOn) {
			return errors.New("boom")
		}
		return nil
	})
	errs := make([]error, 10)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = b.Do(t.Context(), 0) })
	for len(pendingOf(b)) != 0 || !runningOf(b) {
		time.Sleep(time.Millisecond) // the first call is in flight
	}
	for i := 1; i < 10; i++ {
		wg.Go(func() { errs[i] = b.Do(t.Context(), i) })
	}
	for len(pendingOf(b)) != 9 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()

	if len(calls) != 4 || len(calls[0]) != 1 || len(calls[1]) != 4 || len(calls[2]) != 4 || len(calls[3]) != 1 {
		t.Fatalf("calls = %v, want sizes 1, 4, 4, 1", calls)
	}
	var all []int
	var failedBatch []int
	for _, c := range calls {
		all = append(all, c...)
		if slices.Contains(c, failOn) {
			failedBatch = c
		}
	}
	if slices.Sort(all); !slices.Equal(all, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("items sent = %v, want each once", all)
	}
	for i, err := range errs {
		if want := slices.Contains(failedBatch, i); (err != nil) != want {
			t.Errorf("request %d: err = %v, want an error: %v", i, err, want)
		}
	}
}

// A caller that gives up returns at once; its item still goes out.
func TestCallerGivingUpStillSends(t *testing.T) {
	release := make(chan struct{})
	sent := make(chan int, 2)
	b := New(t.Context(), 0, func(_ context.Context, items []int) error {
		<-release
		for _, i := range items {
			sent <- i
		}
		return nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Do(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do with a cancelled context = %v", err)
	}
	close(release)
	select {
	case i := <-sent:
		if i != 1 {
			t.Fatalf("sent %d", i)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the item of a caller that gave up was not sent")
	}
}

func pendingOf[T any](b *Batcher[T]) []waiter[T] {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.pending)
}

func runningOf[T any](b *Batcher[T]) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running
}
