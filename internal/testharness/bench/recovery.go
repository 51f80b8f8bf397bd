package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// pollEvery is how often the scenarios read state while they wait; it bounds their
// resolution.
const pollEvery = 20 * time.Millisecond

// pause waits pollEvery, or returns ctx's error when it ends first.
func pause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(pollEvery):
		return nil
	}
}

// recovery kills part ("app" or "sidecar") of a worker node while every one of its
// slots runs a task, with idle slots waiting on the other nodes, and reports for the
// tasks it held the time from the kill until each was back in the queue and until each
// ran again on another node.
//
// To have the victim hold a full pool while the others stay idle, the other nodes are
// stopped (gracefully: their slots leave the queue's idle list) while the tasks are
// handed out, and started again before the kill.
func recovery(ctx context.Context, e *Env, part string) ([]Measure, error) {
	st, pool := e.Stack, e.Config.WorkersPerNode
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute+2*e.Config.RecoverySleep)
	defer cancel()
	gw := st.Gateway()
	others := st.Running("worker") // victims of earlier runs are dead
	for _, in := range others {
		in.Stop()
	}
	victim, err := st.StartApp(ctx, "worker", nil)
	if err != nil {
		return nil, err
	}
	defer func() { victim.App.Kill(); victim.Daprd.Kill() }()

	var ids []string
	for range pool {
		v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": e.Config.RecoverySleep.Milliseconds()}, "bench-recovery")
		if err != nil {
			return nil, err
		}
		ids = append(ids, v.ID)
	}
	onVictim := func(v stacktest.TaskView) bool { return strings.HasPrefix(v.Worker, victim.Name+"/") }
	if err := pollTasks(ctx, gw, ids, func(v stacktest.TaskView) bool { return v.Status == "running" && onVictim(v) }); err != nil {
		return nil, fmt.Errorf("victim %s did not take all %d tasks: %w", victim.Name, pool, err)
	}
	for _, in := range others {
		if err := in.Start(ctx); err != nil {
			return nil, err
		}
	}
	if err := waitIdleSlots(ctx, gw, len(others)*pool); err != nil {
		return nil, err
	}

	killed := time.Now()
	if part == "app" {
		victim.App.Kill()
	} else {
		victim.Daprd.Kill()
	}
	requeued, running := map[string]time.Duration{}, map[string]time.Duration{}
	for len(running) < len(ids) {
		for _, id := range ids {
			if _, ok := running[id]; ok {
				continue
			}
			v, err := gw.Get(ctx, id)
			if err == nil && v.Status == "completed" && v.Attempts == 1 {
				return nil, fmt.Errorf("task %s finished before the kill: make the recovery tasks longer", id)
			}
			// Re-queued: pending again at high priority (a short phase that polling may
			// miss when a slot is idle), then running as attempt 2.
			if err != nil || v.Attempts < 2 && !(v.Status == "pending" && v.Priority == "high") {
				continue
			}
			if _, ok := requeued[id]; !ok {
				requeued[id] = time.Since(killed)
			}
			if v.Attempts >= 2 && (v.Status == "running" && !onVictim(v) || v.Status == "completed") {
				running[id] = time.Since(killed)
			}
		}
		if err := pause(ctx); err != nil {
			return nil, fmt.Errorf("%d of %d tasks ran again elsewhere: %w", len(running), len(ids), err)
		}
	}
	// The tasks finish before the next run, so that it starts with idle slots.
	if err := pollTasks(ctx, gw, ids, func(v stacktest.TaskView) bool { return v.Status == "completed" }); err != nil {
		return nil, err
	}
	ms := durationsOf(requeued)
	rs := durationsOf(running)
	return []Measure{
		{"kill→re-queued p50", "s", Quantile(ms, 0.5).Seconds()},
		{"kill→re-queued max", "s", Quantile(ms, 1).Seconds()},
		{"kill→running elsewhere p50", "s", Quantile(rs, 0.5).Seconds()},
		{"kill→running elsewhere max", "s", Quantile(rs, 1).Seconds()},
	}, nil
}

func durationsOf(m map[string]time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	return out
}

// pollTasks waits until ok holds for every task of ids.
func pollTasks(ctx context.Context, gw stacktest.Gateway, ids []string, ok func(stacktest.TaskView) bool) error {
	done := map[string]bool{}
	for {
		for _, id := range ids {
			if done[id] {
				continue
			}
			if v, err := gw.Get(ctx, id); err == nil && ok(v) {
				done[id] = true
			}
		}
		if len(done) == len(ids) {
			return nil
		}
		if err := pause(ctx); err != nil {
			return fmt.Errorf("%d of %d tasks: %w", len(done), len(ids), err)
		}
	}
}

// waitIdleSlots waits until the queue counts at least n idle slots (as the gateway
// hosting it exports them).
func waitIdleSlots(ctx context.Context, gw stacktest.Gateway, n int) error {
	var idle float64
	for {
		m, err := stacktest.ScrapeMetrics(ctx, gw.Base)
		if err == nil {
			if idle = m.Sum("taskgrid_queue_idle_slots"); idle >= float64(n) {
				return nil
			}
		}
		if err := pause(ctx); err != nil {
			return fmt.Errorf("queue has %v idle slots, want %d: %w", idle, n, err)
		}
	}
}
