package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// timing is what one user saw of one task.
type timing struct {
	submitted time.Time // the submit request was sent
	started   time.Time // the attempt started (started_at of the completion, the worker's clock)
	finished  time.Time // the result was on disk (finished_at of the completion, the storekeeper's clock)
	notified  time.Time // the completion event arrived on the task's SSE stream
}

// watch follows the SSE stream of task id (GET /api/v1/tasks/{id}/events) to its end,
// and fills in t from its completion event, which the gateway sends only once the result
// is on disk, and then ends the stream. It reads the stream itself, with a 4 KiB buffer,
// rather than through stacktest.Gateway.Events (a 1 MiB line buffer and a goroutine per
// stream): thousands of streams are open at once in a burst, or in a paced run that
// falls behind, on the machine under test.
func watch(ctx context.Context, gw stacktest.Gateway, id string, t timing) (timing, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, gw.Base+"/api/v1/tasks/"+id+"/events", nil)
	if err != nil {
		return t, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return t, fmt.Errorf("task %s: events: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return t, fmt.Errorf("task %s: events: %d %s", id, resp.StatusCode, b)
	}
	r := bufio.NewReaderSize(resp.Body, 4096)
	var seen []string
	var event string
	var data []byte
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull { // a line longer than the buffer
			var rest []byte
			rest, err = r.ReadBytes('\n')
			line = append(slices.Clone(line), rest...)
		}
		if err != nil {
			break // the stream ended
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if event == "" && data == nil {
				continue
			}
			seen = append(seen, event)
			if event == "completed" {
				at := time.Now()
				var done stacktest.TaskView
				if err := json.Unmarshal(data, &done); err != nil || done.StartedAt == nil || done.FinishedAt == nil || done.Result == nil {
					return t, fmt.Errorf("task %s: completion event without start or finish time or result: %s (%v)", id, data, err)
				}
				t.notified, t.started, t.finished = at, *done.StartedAt, *done.FinishedAt
			}
			event, data = "", nil
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
	if t.notified.IsZero() {
		return t, fmt.Errorf("task %s: stream ended without a completion (events %v; %v)", id, seen, ctx.Err())
	}
	return t, nil
}

// timings collects the timings of many tasks followed at once, and their errors, and
// counts submits sent and tasks finished (notified or failed) as they happen.
type timings struct {
	mu       sync.Mutex
	all      []timing
	errs     []error
	wg       sync.WaitGroup
	sent     atomic.Int64
	finished atomic.Int64
	refused  atomic.Int64 // 503 answers, each retried
}

func (ts *timings) add(t timing, err error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.finished.Add(1)
	if err != nil {
		ts.errs = append(ts.errs, err)
		return
	}
	ts.all = append(ts.all, t)
}

// refusals is how many submissions were answered 503 (and retried), as a figure.
func (ts *timings) refusals() Measure {
	return Measure{Name: "submissions answered 503 (retried)", Unit: "answers", Value: float64(ts.refused.Load())}
}

// backlog is how many tasks were submitted and not yet finished.
func (ts *timings) backlog() int64 { return ts.sent.Load() - ts.finished.Load() }

// submit submits a noop task, returning once the gateway answered, and follows its
// stream in the background.
func (ts *timings) submit(ctx context.Context, gw stacktest.Gateway) {
	t := timing{submitted: time.Now()}
	ts.sent.Add(1)
	// A 503 (the queue out of reach within the submission's budget, as under overload)
	// is retried after its Retry-After; the task's times count from the first try. No
	// Idempotency-Key, as the peers' clients send none (a keyed submission costs two
	// more state calls: README, "HTTP API"), so a refused task may also run.
	v, refused, err := gw.SubmitUntilAccepted(ctx, "noop", map[string]any{}, "bench", "")
	ts.refused.Add(int64(refused))
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
	return between(ts, func(t timing) time.Time { return t.submitted }, at)
}

func notifiedAt(t timing) time.Time { return t.notified }
func startedAt(t timing) time.Time  { return t.started }

// between returns, for each timing, the time from what from picks to what to picks.
func between(ts []timing, from, to func(timing) time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = to(t).Sub(from(t))
	}
	return out
}

func finishedAt(t timing) time.Time { return t.finished }

// steadyAfter is how long after a paced run's first submit its steady-state figures start.
const steadyAfter = 2 * time.Second

// submittedFrom returns the timings of the tasks submitted at from or later.
func submittedFrom(ts []timing, from time.Time) []timing {
	var out []timing
	for _, t := range ts {
		if !t.submitted.Before(from) {
			out = append(out, t)
		}
	}
	return out
}

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

// lastNotified is the latest notification of ts.
func lastNotified(ts []timing) time.Time {
	var last time.Time
	for _, t := range ts {
		if t.notified.After(last) {
			last = t.notified
		}
	}
	return last
}

// costs reports what the stack spent on n tasks in a window: CPU per task by process
// group and in all, cores in use over elapsed seconds, sidecar calls per task by kind, the
// mean latency of each leg, and the events analytics took in per task (once its intake
// settled).
func costs(ctx context.Context, w *window, n int, elapsed float64) ([]Measure, error) {
	cpu, calls, err := w.end(ctx)
	if err != nil {
		return nil, err
	}
	ms := cpuMeasures(cpu.used, cpu.self, cpu.machine, n)
	ms = append(ms, Measure{Name: "CPU in use (all processes of the stack)", Unit: "cores", Value: cpuTotal(cpu.used) / elapsed})
	ms = append(ms, switchMeasures(cpu.switches, cpu.selfSwitches, n)...)
	ms = append(ms, callMeasures(calls, n)...)
	ms = append(ms, hopMeasures(w.metrics, w.after)...)
	in, err := settledIntake(ctx, w.st, w.intake, n)
	if err != nil {
		return nil, err
	}
	return append(ms, intakeMeasures(w.intake, in, n)...), nil
}

// pacedLight is paced at a light rate, followed by the machine's wake-up probe (see
// hops.go), which a light load's latencies are to be read with.
func pacedLight(ctx context.Context, e *Env, rate int) ([]Measure, error) {
	ms, err := paced(ctx, e, rate)
	if err != nil {
		return nil, err
	}
	w, err := wakeups(ctx, e.Stack.RedisAddr)
	if err != nil {
		return nil, err
	}
	return append(ms, w...), nil
}

// burst submits BurstTasks noop tasks from BurstClients clients at once, each task
// followed on its own SSE stream, and reports tasks per second from the first submit
// to the last notification, with submit→notified p50 and p99, and what the stack spent.
func burst(ctx context.Context, e *Env) ([]Measure, error) {
	c := e.Config
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	gw := e.Stack.Gateway()
	var ts timings
	next := make(chan struct{})
	var clients sync.WaitGroup
	ref := machineBefore()
	w, err := startWindow(ctx, e.Stack)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	profiled := profileStack(ctx, e, "burst", 2*time.Second, 10*time.Second)
	defer profiled()
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
	elapsed := lastNotified(all).Sub(start).Seconds()
	ms := append([]Measure{{Name: "throughput", Unit: "tasks/s", Value: float64(len(all)) / elapsed}, ts.refusals()}, ref...)
	ms = append(ms, latencies("submit→notified", spans(all, notifiedAt), false)...)
	spent, err := costs(ctx, w, len(all), elapsed)
	if err != nil {
		return nil, err
	}
	ms = append(ms, spent...)
	return append(ms, peakMemory(e.Stack)...), nil
}

// backlogSample is the backlog (submitted, not yet finished) at one moment of a paced run.
type backlogSample struct {
	at       time.Duration // since the first submit
	backlog  int64
	finished int64
}

// sustained judges a paced run from its backlog samples, taken while tasks were offered
// for offered (the last sample is at its end): the backlog at 10 % of the window and at
// its end, how fast it grew in between (tasks/s), the rate of completions over the
// second half against the rate offered, and whether the stack kept up: completions at
// 95 % of the offer or more and a backlog growing by less than 2 % of it, or by one task
// at most (the last sample is taken as the last task is submitted, so a short, light run
// ends with it in flight: 10/s for 3 s read as growing by 0.4 tasks/s).
func sustained(samples []backlogSample, rate float64) (first, last backlogSample, growth, ratio float64, ok bool) {
	if len(samples) < 2 {
		return
	}
	end := samples[len(samples)-1]
	at := func(frac float64) backlogSample {
		want := time.Duration(frac * float64(end.at))
		for _, s := range samples {
			if s.at >= want {
				return s
			}
		}
		return end
	}
	first, last = at(0.1), end
	if d := (last.at - first.at).Seconds(); d > 0 {
		growth = float64(last.backlog-first.backlog) / d
	}
	mid := at(0.5)
	if d := (end.at - mid.at).Seconds(); d > 0 && rate > 0 {
		ratio = float64(end.finished-mid.finished) / d / rate
	}
	ok = ratio >= 0.95 && (growth < 0.02*rate || last.backlog-first.backlog <= 1)
	return
}

// offer calls submit n times, the i-th at start + i/rate, and record every 100 ms. It
// wakes every millisecond and submits every task due by then, so that a late wake-up (a
// busy machine) delays a few submits by a millisecond or two instead of losing them, as
// a ticker drops the ticks it missed.
func offer(ctx context.Context, start time.Time, n, rate int, submit, record func()) error {
	nextSample := 100 * time.Millisecond
	for i := 0; i < n; {
		now := time.Since(start)
		for due := min(int(now.Seconds()*float64(rate))+1, n); i < due; i++ {
			submit()
		}
		if now >= nextSample {
			record()
			nextSample += 100 * time.Millisecond
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%d of %d tasks offered: %w", i, n, err)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// paced submits rate tasks per second for PacedDuration, starting with idle workers,
// and reports submit→started and submit→notified p50, p99 and max, whether the stack
// kept up (the backlog of tasks submitted and not yet notified, sampled every 100 ms
// while the tasks are offered), and what the stack spent per task from the first submit
// to the last notification.
func paced(ctx context.Context, e *Env, rate int) ([]Measure, error) {
	c := e.Config
	ctx, cancel := context.WithTimeout(ctx, c.PacedDuration+10*time.Minute)
	defer cancel()
	gw := e.Stack.Gateway()
	var ts timings
	n := max(int(c.PacedDuration.Seconds()*float64(rate)), 1)
	ref := machineBefore()
	if err := resetSteps(c.Steps); err != nil {
		return nil, err
	}
	w, err := startWindow(ctx, e.Stack)
	if err != nil {
		return nil, err
	}
	var samples []backlogSample
	start := time.Now()
	profiled := profileStack(ctx, e, fmt.Sprintf("paced-%d", rate), c.PacedDuration/3, min(10*time.Second, c.PacedDuration/2))
	defer profiled()
	record := func() {
		samples = append(samples, backlogSample{time.Since(start), ts.backlog(), ts.finished.Load()})
	}
	if err := offer(ctx, start, n, rate, func() { ts.wg.Go(func() { ts.submit(ctx, gw) }) }, record); err != nil {
		return nil, err
	}
	offered := time.Since(start)
	record()
	all, err := ts.wait()
	if err != nil {
		return nil, err
	}
	last := lastNotified(all)
	first, end, growth, ratio, ok := sustained(samples, float64(rate))
	yes := 0.0
	if ok {
		yes = 1
	}
	ms := latencies("submit→started", spans(all, startedAt), true)
	ms = append(ms, latencies("submit→notified", spans(all, notifiedAt), true)...)
	// The same without the run's first seconds, in which every process goes from idle to
	// the rate: on a fresh stack they held most of the slowest 1 % (docs/benchmarks-history.md, "The eighth
	// session of 2026-12-06"). A diagnostic; the target is on the whole run.
	if steady := submittedFrom(all, start.Add(steadyAfter)); c.PacedDuration >= 2*steadyAfter && len(steady) > 0 {
		ms = append(ms, latencies(fmt.Sprintf("submit→notified from %v on", steadyAfter), spans(steady, notifiedAt), false)...)
	}
	// Where the time after the start goes: storing the result and recording it, then the
	// completion event's way through the broker and the gateway's feed to the stream.
	ms = append(ms, latencies("started→result stored", between(all, startedAt, finishedAt), false)...)
	ms = append(ms, latencies("result stored→notified", between(all, finishedAt, notifiedAt), false)...)
	ms = append(ms,
		Measure{Name: "offered", Unit: "tasks/s", Value: float64(n) / offered.Seconds()},
		Measure{Name: "completed / offered (second half of the window)", Unit: "ratio", Value: ratio},
		Measure{Name: "backlog at 10 % of the window (submitted, not notified)", Unit: "tasks", Value: float64(first.backlog)},
		Measure{Name: "backlog at the end of the window", Unit: "tasks", Value: float64(end.backlog)},
		Measure{Name: "backlog growth", Unit: "tasks/s", Value: growth},
		Measure{Name: "sustained", Unit: "1 = yes", Value: yes},
		Measure{Name: "drain after the last submit", Unit: "s", Value: last.Sub(start.Add(offered)).Seconds()},
		ts.refusals(),
	)
	ms = append(ms, ref...)
	spent, err := costs(ctx, w, len(all), last.Sub(start).Seconds())
	if err != nil {
		return nil, err
	}
	way, err := stepMeasures(c.Steps)
	if err != nil {
		return nil, err
	}
	return append(append(ms, spent...), way...), nil
}
