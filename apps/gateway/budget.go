package main

import (
	"context"
	"sync"
	"time"
)

// bodyBudget bounds the bytes of submission bodies a gateway holds at once. A body of up
// to 16 MiB is read whole, decoded, and its payload kept in the task's record until the
// submission is answered: without a bound, a hundred large submissions at once would
// take gigabytes. A submission takes its Content-Length (the most a body may be, when it
// sends none) before it reads, and gives it back once answered.
type bodyBudget struct {
	mu   sync.Mutex
	free int64
	// room is closed, and replaced, when bytes come back while waiting submissions
	// wait for them (a submission that finds room at once costs no channel).
	room    chan struct{}
	waiting int
}

func newBodyBudget(n int64) *bodyBudget {
	return &bodyBudget{free: n, room: make(chan struct{})}
}

// take takes n bytes, waiting up to wait for them, and reports whether it did.
func (b *bodyBudget) take(ctx context.Context, n int64, wait time.Duration) bool {
	var timeout <-chan time.Time
	for {
		b.mu.Lock()
		if n <= b.free {
			b.free -= n
			b.mu.Unlock()
			return true
		}
		room := b.room
		b.waiting++
		b.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		var woken bool
		select {
		case <-room:
			woken = true
		case <-timeout:
		case <-ctx.Done():
		}
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
		if !woken {
			return false
		}
	}
}

// give gives back n bytes taken.
func (b *bodyBudget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += n
	if b.waiting > 0 {
		close(b.room)
		b.room = make(chan struct{})
	}
}
