// Package ordering checks queue order end to end on a pool of one worker slot, where
// the order of execution is the order of dispatch (no prefetch buffer: PREFETCH=0).
package ordering

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

func TestMain(m *testing.M) {
	stacktest.Main(m, stacktest.Options{AppEnv: map[string]map[string]string{"worker": {"POOL_SIZE": "1", "PREFETCH": "0"}}})
}

// With one slot: FIFO within a priority, and a task re-queued after a failure (high
// priority) runs before the normal tasks still waiting.
func TestFIFOAndHighBeforeNormal(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// Occupy the only slot so everything after it waits in the queue.
	blocker, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 1500}, "order")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.WaitStatus(ctx, blocker.ID, "running"); err != nil {
		t.Fatal(err)
	}
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	ids := map[string]string{}
	for _, n := range names {
		payload := map[string]any{"ms": 20}
		if n == "n2" || n == "n4" {
			payload["forceFailure"] = 1 // fails once, then is re-queued at high priority
		}
		v, err := gw.Submit(ctx, "sleep", payload, "order")
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = v.ID
	}
	finished := map[string]time.Time{}
	for _, n := range names {
		v, err := gw.WaitStatus(ctx, ids[n], "completed")
		if err != nil {
			t.Fatal(err)
		}
		finished[n] = *v.FinishedAt
		wantAttempts := 1
		if n == "n2" || n == "n4" {
			wantAttempts = 2
		}
		if v.Attempts != wantAttempts {
			t.Errorf("%s attempts = %d, want %d", n, v.Attempts, wantAttempts)
		}
	}
	order := slices.Clone(names)
	slices.SortFunc(order, func(a, b string) int { return finished[a].Compare(finished[b]) })
	// Plain FIFO would finish n2 and n4 last (re-queued at the back); high priority
	// runs each again at once.
	if fmt.Sprint(order) != fmt.Sprint(names) {
		t.Fatalf("completion order %v, want %v", order, names)
	}
}
