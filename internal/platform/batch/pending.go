package batch

// Pending is how many items wait for the next call (the call in flight not counted).
// Tests use it to know that requests have gathered.
func (b *Batcher[T]) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// Idle says no item waits and no call is in flight. Items whose callers gave up still go
// out (see New); tests use Idle to know that nothing more will.
func (b *Batcher[T]) Idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) == 0 && !b.running
}
