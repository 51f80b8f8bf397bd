// Package batch coalesces concurrent requests into one call (group commit). While a
// call is in flight, new requests gather; the next call takes them all. A lone request
// waits for nothing: with no call in flight it goes at once (unless the batcher is
// Delayed, for work nobody waits for). Under load one call carries many requests, so a
// single-writer service (an actor) takes one turn for many of them. Runs splits a batch
// too large for one message into calls that each fit.
package batch

import (
	"context"
	"sync"
	"time"
)

// Batcher sends items through do, many at a time, one call in flight at a time.
type Batcher[T any] struct {
	do  func(ctx context.Context, items []T) error
	max int
	ctx context.Context

	// spacing: while calls follow one another, the next starts no sooner than this
	// after the last one started (see Spaced); delay: every item waits this long at the
	// least, and calls go this far apart (see Delayed); full wakes either wait when a
	// whole call's worth has gathered, or when Flush was called.
	spacing time.Duration
	delay   time.Duration
	full    chan struct{}

	mu       sync.Mutex
	pending  []waiter[T]
	running  bool
	flushing bool // set by Flush: no more waits

	// afterCall, when set (by tests), runs after each call's waiters were answered,
	// before the loop looks for more.
	afterCall func()
}

type waiter[T any] struct {
	item T
	done chan error // nil: nobody waits (Add)
	at   time.Time  // when it came (with a delay)
}

// New returns a batcher that calls do with up to max items at once (max < 1 means no
// limit). Calls run under ctx (with no deadline of any one request's): a request whose
// caller gave up still goes out. Every item of a call gets the call's error.
func New[T any](ctx context.Context, max int, do func(ctx context.Context, items []T) error) *Batcher[T] {
	return &Batcher[T]{do: do, max: max, ctx: ctx}
}

// Spaced makes a call that follows another (its items gathered while that one was in
// flight) start no sooner than d after that one started, so that under load each call
// gathers about d's worth of items: fewer, larger calls for at most d more wait. A call
// of max items goes at once, and so does a lone request (nothing gathered during the
// last call, or no call in flight). d <= 0 leaves b unspaced. It returns b; call it
// before the first Do.
func (b *Batcher[T]) Spaced(d time.Duration) *Batcher[T] {
	if d > 0 {
		b.spacing, b.full = d, make(chan struct{}, 1)
	}
	return b
}

// Delayed makes every item wait d at the least: a call goes d after the oldest waiting
// item came, and no sooner than d after the call before it, and takes every item that
// has waited d by then; the others wait for the next call, so an item waits less than
// 2d. Each call gathers about d's worth of items however few come: for work nobody waits
// for (events kept for later reading), fewer calls, none of them in the way of the work
// that made the items, and time for an item to become pointless (its call may drop
// it). A call of max items goes at once, and Flush ends every wait. d <= 0 leaves b as
// it is. It returns b; call it before the first Do or Add.
func (b *Batcher[T]) Delayed(d time.Duration) *Batcher[T] {
	if d > 0 {
		b.delay = d
		if b.full == nil {
			b.full = make(chan struct{}, 1)
		}
	}
	return b
}

// Do sends item with the next call and waits for that call's result, or until ctx
// ends (the item is sent all the same).
func (b *Batcher[T]) Do(ctx context.Context, item T) error {
	w := waiter[T]{item: item, done: make(chan error, 1)}
	b.add(w)
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Add sends item with the next call and does not wait for it: the call's error is do's
// to deal with.
func (b *Batcher[T]) Add(item T) { b.add(waiter[T]{item: item}) }

func (b *Batcher[T]) add(w waiter[T]) {
	b.mu.Lock()
	if b.delay > 0 {
		w.at = time.Now() // under the lock: pending stays in the order of at
	}
	b.pending = append(b.pending, w)
	if b.full != nil && b.max > 0 && len(b.pending) == b.max {
		select {
		case b.full <- struct{}{}:
		default:
		}
	}
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
}

// loop makes calls until nothing is pending.
func (b *Batcher[T]) loop() {
	var last time.Time // when the last call started (with spacing or a delay)
	var followed bool  // items were pending when the last call ended: they follow it
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		if start := b.startLocked(last, followed); !start.IsZero() {
			b.mu.Unlock()
			b.waitUntil(start)
			b.mu.Lock()
		}
		n := b.takeLocked()
		if n == 0 { // woken before any item was due (a call's worth was taken since the signal)
			b.mu.Unlock()
			continue
		}
		batch := b.pending[:n:n]
		b.pending = append([]waiter[T](nil), b.pending[n:]...)
		if b.full != nil && (b.max <= 0 || len(b.pending) < b.max) {
			select { // a signal of the items just taken: not of those left
			case <-b.full:
			default:
			}
		}
		b.mu.Unlock()

		if b.spacing > 0 || b.delay > 0 {
			last = time.Now()
		}
		items := make([]T, len(batch))
		for i, w := range batch {
			items[i] = w.item
		}
		err := b.do(b.ctx, items)
		b.mu.Lock()
		followed = len(b.pending) > 0 // before the answers: a request made after one comes after this call
		b.mu.Unlock()
		for _, w := range batch {
			if w.done != nil {
				w.done <- err
			}
		}
		if b.afterCall != nil {
			b.afterCall()
		}
	}
}

// startLocked is when the next call may start (zero: at once), given when the last one
// started (zero: none since the loop began) and whether items were pending when it ended.
func (b *Batcher[T]) startLocked(last time.Time, followed bool) time.Time {
	if b.flushing {
		return time.Time{}
	}
	var start time.Time
	// Spaced, only items gathered during the last call (or before it) wait: one that came
	// after it ended is a lone request, even if the loop had not seen the call end yet.
	if !last.IsZero() && (b.delay > 0 || followed) {
		start = last.Add(max(b.spacing, b.delay)) // items gathered during the last call: more may come
	}
	if b.delay > 0 {
		if t := b.pending[0].at.Add(b.delay); t.After(start) {
			start = t
		}
	}
	return start
}

// takeLocked is how many of the pending items the next call takes: up to max, and
// with a delay only those that have waited it (all of them once Flush was called, a
// whole call's worth whatever their age).
func (b *Batcher[T]) takeLocked() int {
	n := len(b.pending)
	if b.max > 0 && n >= b.max {
		return b.max
	}
	if b.delay > 0 && !b.flushing {
		due := time.Now().Add(-b.delay)
		n = 0
		for n < len(b.pending) && !b.pending[n].at.After(due) {
			n++
		}
	}
	return n
}

// Flush ends every wait: what is pending goes with the next call, at once, and so
// does what comes later (for a batcher that is shutting down).
func (b *Batcher[T]) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushing = true
	if b.full != nil {
		select {
		case b.full <- struct{}{}:
		default:
		}
	}
}

// waitUntil waits until t, unless a whole call's worth gathers first.
func (b *Batcher[T]) waitUntil(t time.Time) {
	wait := time.Until(t)
	if wait <= 0 {
		return
	}
	b.mu.Lock()
	full := b.max > 0 && len(b.pending) >= b.max
	b.mu.Unlock()
	if full {
		return
	}
	select {
	case <-b.full: // a whole call's worth gathered since the batch was taken
	default:
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-b.full:
		}
	}
}
