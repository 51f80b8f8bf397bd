package failures

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/stacktest"
)

// BenchmarkRecovery measures how long after a SIGKILL the attempts a worker node held
// are back in the queue: from the kill until each held task is pending again or
// running elsewhere. Reported as recovery-p50-s and recovery-max-s; run with
// `make bench` or `go test -run '^$' -bench Recovery -benchtime 3x ./internal/e2e/failures`.
func BenchmarkRecovery(b *testing.B) {
	for _, part := range []string{"app", "sidecar"} {
		b.Run("kill-"+part, func(b *testing.B) {
			var all []time.Duration
			for range b.N { // the figures are the recovery times; ns/op is the whole round
				all = append(all, recoverOnce(b, part)...)
			}
			slices.Sort(all)
			b.ReportMetric(all[len(all)/2].Seconds(), "recovery-p50-s")
			b.ReportMetric(all[len(all)-1].Seconds(), "recovery-max-s")
			b.ReportMetric(float64(len(all)), "tasks-recovered")
		})
	}
}

// recoverOnce starts a worker node, fills its slots with long tasks, kills part of it,
// and returns how long each of its tasks took to be re-queued.
func recoverOnce(b *testing.B, part string) []time.Duration {
	st := stacktest.Get(b)
	gw := st.Gateway()
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	victim, err := st.StartApp(ctx, "worker", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { victim.App.Kill(); victim.Daprd.Kill() }()
	node := victim.Name + "/"

	// Enough long tasks for every slot of both nodes.
	var ids []string
	for range 2 * poolSize {
		v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 8000}, "recovery")
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	held := map[string]bool{}
	for len(held) < poolSize {
		for _, id := range ids {
			if v, err := gw.Get(ctx, id); err == nil && v.Status == "running" && strings.HasPrefix(v.Worker, node) {
				held[id] = true
			}
		}
		if ctx.Err() != nil {
			b.Fatalf("victim runs %d tasks, want %d", len(held), poolSize)
		}
	}
	killed := time.Now()
	if part == "app" {
		victim.App.Kill()
	} else {
		victim.Daprd.Kill()
	}
	var took []time.Duration
	for len(held) > 0 {
		for id := range held {
			v, err := gw.Get(ctx, id)
			if err == nil && (v.Status == "pending" || v.Attempts > 1) {
				took = append(took, time.Since(killed))
				delete(held, id)
			}
		}
		if ctx.Err() != nil {
			b.Fatalf("%d tasks not re-queued: %v", len(held), ctx.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Let the remaining tasks finish so the next round starts with free slots.
	for _, id := range ids {
		if _, err := gw.WaitStatus(ctx, id, "completed", "failed"); err != nil {
			b.Fatal(err)
		}
	}
	return took
}
