// Package batch coalesces concurrent requests into one call (group commit). While a
// call is in flight, new requests gather; the next call takes them all. A lone request
// waits for nothing: with no call in flight it goes at once. Under load one call
// carries many requests, so a single-writer service (an actor) takes one turn for
// many of them.
package batch

import (
	"context"
	"sync"
)

// Batcher sends items through do, many at a time, one call in flight at a time.
type Batcher[T any] struct {
	do  func(ctx context.Context, items []T) error
	max int
	ctx context.Context

	mu      sync.Mutex
	pending []waiter[T]
	running bool
}

type waiter[T any] struct {
	item T
	done chan error
}

// New returns a batcher that calls do with up to max items at once (max < 1 means no
// limit). Calls run under ctx (with no deadline of any one request's): a request whose
// caller gave up still goes out. Every item of a call gets the call's error.
func New[T any](ctx context.Context, max int, do func(ctx context.Context, items []T) error) *Batcher[T] {
	return &Batcher[T]{do: do, max: max, ctx: ctx}
}

// Do sends item with the next call and waits for that call's result, or until ctx
// ends (the item is sent all the same).
func (b *Batcher[T]) Do(ctx context.Context, item T) error {
	w := waiter[T]{item: item, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, w)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop makes calls until nothing is pending.
func (b *Batcher[T]) loop() {
	for {
		b.mu.Lock()
		n := len(b.pending)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		if b.max > 0 {
			n = min(n, b.max)
		}
		batch := b.pending[:n:n]
		b.pending = append([]waiter[T](nil), b.pending[n:]...)
		b.mu.Unlock()

		items := make([]T, len(batch))
		for i, w := range batch {
			items[i] = w.item
		}
		err := b.do(b.ctx, items)
		for _, w := range batch {
			w.done <- err
		}
	}
}
