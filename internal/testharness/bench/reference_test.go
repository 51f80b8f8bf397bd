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

// The machine's probes time what they say: a system call and a page fault each take a
// positive time, well under a millisecond on any machine this runs on.
func TestMachineBefore(t *testing.T) {
	ms := machineBefore()
	names := []string{referenceName, syscallName, pageFaultName}
	if len(ms) != len(names) {
		t.Fatalf("%d measures, want %d", len(ms), len(names))
	}
	for i, m := range ms {
		if m.Name != names[i] {
			t.Errorf("measure %d is %q, want %q", i, m.Name, names[i])
		}
		if i > 0 && (m.Unit != "µs" || m.Value <= 0 || m.Value > 1000) {
			t.Errorf("%s = %v %s: not a time it could take", m.Name, m.Value, m.Unit)
		}
	}
}
