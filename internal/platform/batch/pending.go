package batch

// Pending is how many items wait for the next call (the call in flight not counted).
// Tests use it to know that requests have gathered.
func (b *Batcher[T]) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}
