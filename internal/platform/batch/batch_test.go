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

// With spacing, a lone request still goes at once, and so does the next lone one.
func TestSpacedLoneRequestGoesAtOnce(t *testing.T) {
	var calls [][]int
	b := New(t.Context(), 0, func(_ context.Context, items []int) error {
		calls = append(calls, items)
		return nil
	}).Spaced(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		if err := b.Do(ctx, i); err != nil {
			t.Fatalf("request %d: %v (held back: it should go at once)", i, err)
		}
	}
	if len(calls) != 2 || !slices.Equal(calls[0], []int{0}) || !slices.Equal(calls[1], []int{1}) {
		t.Fatalf("calls = %v, want [[0] [1]]", calls)
	}
}

// With spacing, the items gathered during a call wait for more until the spacing has
// passed since that call started, or a whole call's worth (max) has gathered: then they
// go at once, together.
func TestSpacedFollowingCallWaitsUntilFull(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var calls [][]int
	b := New(t.Context(), 4, func(_ context.Context, items []int) error {
		mu.Lock()
		calls = append(calls, items)
		first := len(calls) == 1
		mu.Unlock()
		if first {
			<-release
		}
		return nil
	}).Spaced(time.Hour)
	callsNow := func() [][]int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(calls)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = b.Do(t.Context(), 0) })
	for len(callsNow()) != 1 {
		time.Sleep(time.Millisecond) // the first call is in flight
	}
	for i := 1; i <= 2; i++ {
		wg.Go(func() { _ = b.Do(t.Context(), i) })
	}
	for len(pendingOf(b)) != 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	time.Sleep(50 * time.Millisecond) // ample for a call that does not wait
	if c := callsNow(); len(c) != 1 {
		t.Fatalf("calls = %v: the following call went before the spacing or a full call", c)
	}
	for i := 3; i <= 4; i++ {
		wg.Go(func() { _ = b.Do(t.Context(), i) })
	}
	wg.Wait() // returns only once the full call went
	c := callsNow()
	if len(c) == 2 {
		slices.Sort(c[1]) // the requests raced one another
	}
	if len(c) != 2 || !slices.Equal(c[1], []int{1, 2, 3, 4}) {
		t.Fatalf("calls = %v, want [[0] [1 2 3 4]] in any order", c)
	}
}

// With spacing, items gathered during a call go once the spacing has passed, though no
// whole call's worth gathered.
func TestSpacedFollowingCallGoesAfterSpacing(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var calls [][]int
	b := New(t.Context(), 4, func(_ context.Context, items []int) error {
		mu.Lock()
		calls = append(calls, items)
		first := len(calls) == 1
		mu.Unlock()
		if first {
			<-release
		}
		return nil
	}).Spaced(20 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Go(func() { _ = b.Do(t.Context(), 0) })
	for !runningOf(b) || len(pendingOf(b)) != 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- b.Do(ctx, 1) }()
	for len(pendingOf(b)) != 1 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatalf("the following request did not go: %v", err)
	}
	wg.Wait()
	if len(calls) != 2 || !slices.Equal(calls[1], []int{1}) {
		t.Fatalf("calls = %v, want [[0] [1]]", calls)
	}
}
