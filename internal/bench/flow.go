package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/taskgrid/taskgrid/internal/stacktest"
)

// timing is what one user saw of one task.
type timing struct {
	submitted time.Time // the submit request was sent
	started   time.Time // the attempt started (started_at of the completion, the worker's clock)
	notified  time.Time // the completion event arrived on the task's SSE stream
}

// watch follows the SSE stream of task id to its completion event, which the gateway
// sends only once the result is on disk, and fills in t.
func watch(ctx context.Context, gw stacktest.Gateway, id string, t timing) (timing, error) {
	events, connected := gw.Events(ctx, id)
	if err := <-connected; err != nil {
		return t, err
	}
	var seen []string
	for ev := range events {
		seen = append(seen, ev.Event)
		if ev.Event != "completed" {
			continue
		}
		var done stacktest.TaskView
		if err := json.Unmarshal(ev.Data, &done); err != nil || done.StartedAt == nil || done.Result == nil {
			return t, fmt.Errorf("task %s: completion event without start time or result: %s (%v)", id, ev.Data, err)
		}
		t.notified, t.started = ev.At, *done.StartedAt
	}
	if t.notified.IsZero() {
		return t, fmt.Errorf("task %s: stream ended without a completion (events %v; %v)", id, seen, ctx.Err())
	}
	return t, nil
}

// timings collects the timings of many tasks followed at once, and their errors.
type timings struct {
	mu   sync.Mutex
	all  []timing
	errs []error
	wg   sync.WaitGroup
}

func (ts *timings) add(t timing, err error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if err != nil {
		ts.errs = append(ts.errs, err)
		return
	}
	ts.all = append(ts.all, t)
}

// submit submits a noop task, returning once the gateway answered, and follows its
// stream in the background.
func (ts *timings) submit(ctx context.Context, gw stacktest.Gateway) {
	t := timing{submitted: time.Now()}
	v, err := gw.Submit(ctx, "noop", map[string]any{}, "bench")
	if err != nil {
		ts.add(t, err)
		return
	}
	ts.wg.Go(func() { ts.add(watch(ctx, gw, v.ID, t)) })
}

// wait waits for every task followed; it fails with the first error (and the count).
func (ts *timings) wait() ([]timing, error) {
	ts.wg.Wait()
	if n := len(ts.errs); n > 0 {
		return nil, fmt.Errorf("%d of %d tasks failed; first: %w", n, n+len(ts.all), ts.errs[0])
	}
	return ts.all, nil
}

// spans returns, for each timing, the time from its submit to what at picks.
func spans(ts []timing, at func(timing) time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = at(t).Sub(t.submitted)
	}
	return out
}

func notifiedAt(t timing) time.Time { return t.notified }
func startedAt(t timing) time.Time  { return t.started }

// latencies reports the p50, p99 and (with withMax) the maximum of ds in milliseconds.
func latencies(prefix string, ds []time.Duration, withMax bool) []Measure {
	ms := []Measure{
		{prefix + " p50", "ms", Millis(Quantile(ds, 0.50))},
		{prefix + " p99", "ms", Millis(Quantile(ds, 0.99))},
	}
	if withMax {
		ms = append(ms, Measure{prefix + " max", "ms", Millis(Quantile(ds, 1))})
	}
	return ms
}

// burst submits BurstTasks noop tasks from BurstClients clients at once, each task
// followed on its own SSE stream, and reports tasks per second from the first submit
// to the last notification, with submit→notified p50 and p99.
func burst(ctx context.Context, e *Env) ([]Measure, error) {
	c := e.Config
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	gw := e.Stack.Gateway()
	var ts timings
	next := make(chan struct{})
	var clients sync.WaitGroup
	cpuBefore := stackCPU(e.Stack)
	start := time.Now()
	for range c.BurstClients {
		clients.Go(func() {
			for range next {
				ts.submit(ctx, gw)
			}
		})
	}
	for range c.BurstTasks {
		next <- struct{}{}
	}
	close(next)
	clients.Wait()
	all, err := ts.wait()
	if err != nil {
		return nil, err
	}
	var last time.Time
	for _, t := range all {
		if t.notified.After(last) {
			last = t.notified
		}
	}
	cpu := stackCPU(e.Stack) - cpuBefore
	elapsed := last.Sub(start).Seconds()
	ms := []Measure{{"throughput", "tasks/s", float64(len(all)) / elapsed}}
	ms = append(ms, latencies("submit→notified", spans(all, notifiedAt), false)...)
	ms = append(ms,
		Measure{"CPU per task (all processes of the stack)", "ms", cpu * 1000 / float64(len(all))},
		Measure{"CPU in use (all processes of the stack)", "cores", cpu / elapsed})
	return append(ms, peakMemory(e.Stack)...), nil
}

// paced submits rate tasks per second for PacedDuration, starting with idle workers,
// and reports submit→started and submit→notified p50, p99 and max.
func paced(ctx context.Context, e *Env, rate int) ([]Measure, error) {
	c := e.Config
	ctx, cancel := context.WithTimeout(ctx, c.PacedDuration+10*time.Minute)
	defer cancel()
	gw := e.Stack.Gateway()
	var ts timings
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for range int(c.PacedDuration.Seconds() * float64(rate)) {
		<-tick.C
		ts.wg.Go(func() { ts.submit(ctx, gw) })
	}
	all, err := ts.wait()
	if err != nil {
		return nil, err
	}
	ms := latencies("submit→started", spans(all, startedAt), true)
	return append(ms, latencies("submit→notified", spans(all, notifiedAt), true)...), nil
}
