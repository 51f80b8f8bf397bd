package bench

import "testing"

// The reference work is timed: a positive time in milliseconds, under its own name.
func TestReferenceWork(t *testing.T) {
	m := referenceWork()
	if m.Name != referenceName || m.Unit != "ms" {
		t.Fatalf("measure %q in %q, want %q in ms", m.Name, m.Unit, referenceName)
	}
	if m.Value <= 0 || m.Value > 60000 {
		t.Fatalf("reference work took %v ms: not a time it could take", m.Value)
	}
}
