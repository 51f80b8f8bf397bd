// Package failures checks the failure model end to end: a worker app or its sidecar
// killed with SIGKILL mid-run, tasks that fail on purpose, and a task that hangs past
// its time limit. Failed attempts go back to the queue at high priority without a word
// to the user; what the user sees is exactly one completion per task.
package failures

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

const poolSize = 3

func TestMain(m *testing.M) {
	stacktest.Main(m, stacktest.Options{AppEnv: map[string]map[string]string{"worker": {"POOL_SIZE": fmt.Sprint(poolSize)}}})
}

func TestWorkerAppKilled(t *testing.T) {
	killMidRun(t, func(victim *stacktest.Instance) { victim.App.Kill() }, nil)
}

// Without its sidecar the app lives on and finishes the attempts it held, but cannot
// deliver them; once a new sidecar starts, it delivers them late, long after the
// attempts were re-queued and completed elsewhere. The user still sees one result.
func TestWorkerSidecarKilled(t *testing.T) {
	killMidRun(t, func(victim *stacktest.Instance) { victim.Daprd.Kill() }, func(ctx context.Context, victim *stacktest.Instance) error {
		return victim.StartSidecar(ctx)
	})
}

// killMidRun runs 40 sleep tasks on two worker nodes, kills part of one node with kill
// while it runs tasks, and checks that every task completes once, that the tasks the
// node held ran again (attempt 2) ahead of the normal tasks still waiting, and that
// every SSE subscriber saw exactly one completion and no failure.
//
// revive, if not nil, brings the killed part back after every task completed; the
// attempts the victim still held then reach the storekeeper late, as duplicates.
func killMidRun(t *testing.T, kill func(*stacktest.Instance), revive func(context.Context, *stacktest.Instance) error) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	keeper := st.App("storekeeper").BaseURL()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	victim, err := st.StartApp(ctx, "worker", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.App.Kill(); victim.Daprd.Kill() })
	before := stacktest.MustScrapeMetrics(t, keeper)
	node := victim.Name + "/" // the Worker field of its attempts: "<node>/<slot>"

	const n = 40
	const sleep = 1000 // ms: long enough that a task seen starting is still running at the kill
	ids := make([]string, n)
	streams := make([]*stream, n)
	for i := range ids {
		v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": sleep}, "failures")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = v.ID
		streams[i] = follow(ctx, t, gw, v.ID)
	}

	// Kill once the victim has just started a task: it surely holds it when killed.
	var fresh string
	for fresh == "" {
		for _, id := range ids {
			v, err := gw.Get(ctx, id)
			if err == nil && v.Status == "running" && strings.HasPrefix(v.Worker, node) && time.Since(*v.StartedAt) < 250*time.Millisecond {
				fresh = id
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatal("the second worker node never started a task")
		}
	}
	kill(victim)
	t.Logf("killed %s while it ran %s", victim.Name, fresh)

	held := map[string]bool{} // running on the victim after the kill
	// Pending after the kill: maybe in flight to the victim (pushed to a slot, its
	// watchdog armed, not yet recorded as running there), so it may run once or twice.
	pending := map[string]bool{}
	for _, id := range ids {
		v, err := gw.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case v.Status == "running" && strings.HasPrefix(v.Worker, node):
			held[id] = true
		case v.Status == "pending":
			pending[id] = true
		}
	}
	if !held[fresh] {
		t.Fatalf("task %s, started on %s just before the kill, was not running there after it", fresh, victim.Name)
	}

	final := map[string]stacktest.TaskView{}
	for _, id := range ids {
		v, err := gw.WaitStatus(ctx, id, "completed", "failed")
		if err != nil {
			t.Fatal(err)
		}
		if v.Status != "completed" {
			t.Errorf("task %s ended %s (%s)", id, v.Status, v.Error)
		}
		final[id] = v
	}
	for id, v := range final {
		switch {
		case held[id] && id == fresh && v.Attempts != 2:
			t.Errorf("task %s, held by the killed node, ran %d attempts, want 2", id, v.Attempts)
		case !held[id] && !pending[id] && v.Attempts != 1:
			t.Errorf("task %s ran %d attempts, want 1 (the killed node did not hold it)", id, v.Attempts)
		case v.Attempts > 2:
			t.Errorf("task %s ran %d attempts", id, v.Attempts)
		}
	}
	// A re-queued attempt goes out before every normal task still waiting: no first
	// attempt left the queue between the re-queue and its dispatch.
	for id, r := range final {
		if r.Attempts != 2 {
			continue
		}
		if r.QueuedAt == nil || r.DispatchedAt == nil {
			t.Fatalf("task %s has no queue times: %+v", id, r)
		}
		for nid, nv := range final {
			if nv.Attempts == 1 && nv.DispatchedAt != nil && nv.DispatchedAt.After(*r.QueuedAt) && nv.DispatchedAt.Before(*r.DispatchedAt) {
				t.Errorf("normal task %s was dispatched at %s, after %s was re-queued (%s) and before it went out (%s)",
					nid, nv.DispatchedAt.Format(time.StampMicro), id, r.QueuedAt.Format(time.StampMicro), r.DispatchedAt.Format(time.StampMicro))
			}
		}
	}
	for i, s := range streams {
		if err := s.wait(ctx); err != nil {
			t.Errorf("stream of %s: %v", ids[i], err)
		}
	}

	if revive != nil {
		if err := revive(ctx, victim); err != nil {
			t.Fatal(err)
		}
		// The victim delivers what it held; the storekeeper keeps the first result.
		for stacktest.MustScrapeMetrics(t, keeper).Sum("taskgrid_results_stored_total", `outcome="duplicate"`) <= before.Sum("taskgrid_results_stored_total", `outcome="duplicate"`) {
			if ctx.Err() != nil {
				t.Fatal("the revived node never delivered the results it held")
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, id := range ids {
			if v, err := gw.Get(ctx, id); err != nil || v.Status != "completed" || v.Result == nil || v.Result.Path != final[id].Result.Path || v.FinishedAt == nil || !v.FinishedAt.Equal(*final[id].FinishedAt) {
				t.Errorf("task %s after the late delivery: %+v, %v (was %+v)", id, v, err, final[id])
			}
		}
	}
	after := stacktest.MustScrapeMetrics(t, keeper)
	if got := after.Sum("taskgrid_tasks_completed_total") - before.Sum("taskgrid_tasks_completed_total"); got != n {
		t.Errorf("storekeeper completed %v tasks, want %d: one completion per task", got, n)
	}
	if got := after.Sum("taskgrid_results_stored_total", `outcome="written"`) - before.Sum("taskgrid_results_stored_total", `outcome="written"`); got != n {
		t.Errorf("storekeeper wrote %v results, want %d", got, n)
	}
}

// stream follows one task's SSE stream and checks what the user is told: exactly one
// completion and nothing about failed attempts.
type stream struct {
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func follow(ctx context.Context, t *testing.T, gw stacktest.Gateway, id string) *stream {
	t.Helper()
	events, connected := gw.Events(ctx, id)
	if err := <-connected; err != nil {
		t.Fatal(err)
	}
	s := &stream{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		completions := 0
		var problems []string
		for ev := range events {
			switch ev.Event {
			case "completed":
				completions++
			case "failed":
				problems = append(problems, "failure event: "+string(ev.Data))
			}
			if strings.Contains(string(ev.Data), "attempt_failed") || strings.Contains(string(ev.Data), `"error"`) {
				problems = append(problems, "event mentions a failed attempt: "+string(ev.Data))
			}
		}
		if completions != 1 {
			problems = append(problems, fmt.Sprintf("%d completion events, want 1", completions))
		}
		s.mu.Lock()
		if len(problems) > 0 {
			s.err = fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		s.mu.Unlock()
	}()
	return s
}

func (s *stream) wait(ctx context.Context) error {
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("stream did not end: %w", ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// forceFailure: k makes the first k attempts fail; the task completes at attempt k + 1,
// silently, or fails for good once attempts run out, and then the user is told why.
func TestForcedFailures(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	const maxAttempts = 5 // the gateway's default MAX_ATTEMPTS

	tests := []struct {
		name     string
		k        int
		status   string
		attempts int
	}{
		{"recovers after two failures", 2, "completed", 3},
		{"recovers at the last attempt", maxAttempts - 1, "completed", maxAttempts},
		{"fails for good", maxAttempts, "failed", maxAttempts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			v, err := gw.Submit(ctx, "noop", map[string]any{"forceFailure": tt.k}, "forced")
			if err != nil {
				t.Fatal(err)
			}
			events, connected := gw.Events(ctx, v.ID)
			if err := <-connected; err != nil {
				t.Fatal(err)
			}
			var kinds []string
			var last stacktest.SSEEvent
			for ev := range events {
				if ev.Event != "progress" {
					kinds = append(kinds, ev.Event)
				}
				last = ev
			}
			if last.Event != tt.status {
				t.Fatalf("stream ended with %q (events %v), want %q", last.Event, kinds, tt.status)
			}
			for _, k := range kinds[:len(kinds)-1] {
				if k == "failed" || k == "completed" {
					t.Errorf("events %v: a final event before the end", kinds)
				}
			}
			got, err := gw.Get(ctx, v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tt.status || got.Attempts != tt.attempts {
				t.Fatalf("task ended %s after %d attempts, want %s after %d", got.Status, got.Attempts, tt.status, tt.attempts)
			}
			if tt.status == "failed" {
				var data struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(last.Data, &data); err != nil || !strings.Contains(data.Error, "forced failure") || !strings.Contains(data.Error, fmt.Sprint(maxAttempts)) {
					t.Errorf("failure event %s does not give the reason (%v)", last.Data, err)
				}
				if got.Error != data.Error {
					t.Errorf("task error %q differs from the event's %q", got.Error, data.Error)
				}
			}
			// Failed for good (the worker's batch) or completed (the storekeeper's), the
			// record expires TASK_RETENTION (24 h by default) after.
			if ttl, err := st.AwaitRedisTTL(ctx, "task-"+v.ID); err != nil || ttl <= 86400-120 || ttl > 86400 {
				t.Errorf("%s task's record: TTL %d (%v), want about a day", tt.status, ttl, err)
			}
		})
	}
}

// A task running past its time limit is stopped and re-queued, attempt after attempt,
// until attempts run out; a task within its limit is untouched.
func TestHungTaskIsRequeued(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	hung, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 60_000, "timeLimitMs": 300}, "hung")
	if err != nil {
		t.Fatal(err)
	}
	fine, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 100, "timeLimitMs": 5000}, "hung")
	if err != nil {
		t.Fatal(err)
	}
	v, err := gw.WaitStatus(ctx, hung.ID, "failed", "completed")
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != "failed" || v.Attempts != 5 || !strings.Contains(v.Error, "time limit") {
		t.Fatalf("hung task ended %s after %d attempts (%q), want failed after 5 for its time limit", v.Status, v.Attempts, v.Error)
	}
	// Five attempts within the test's two minutes: each was stopped at its limit, not
	// left to sleep its minute.
	if v, err := gw.WaitStatus(ctx, fine.ID, "completed", "failed"); err != nil || v.Status != "completed" || v.Attempts != 1 {
		t.Fatalf("task within its limit: %+v, %v", v, err)
	}
}
