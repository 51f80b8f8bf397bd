package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/queueactor"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// fillBatch is how many entries one enqueue call adds while the queue is filled.
const fillBatch = 1000

// queueClient calls the TaskQueue actor through the sidecar of the gateway hosting it,
// as the gateways and workers do (over the sidecar's HTTP API instead of gRPC).
type queueClient struct{ sidecar stacktest.Gateway }

func (q queueClient) call(ctx context.Context, method string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/v1.0/actors/%s/%s/method/%s", components.QueueActor, queueactor.DefaultID, method)
	resp, err := q.sidecar.Do(ctx, http.MethodPost, path, body, nil)
	if err == nil && resp.Code/100 != 2 {
		err = fmt.Errorf("%d %s", resp.Code, resp.Body)
	}
	if err != nil {
		return fmt.Errorf("queue %s: %w", method, err)
	}
	if out != nil {
		return json.Unmarshal(resp.Body, out)
	}
	return nil
}

func (q queueClient) depth(ctx context.Context) (uint64, error) {
	var d queue.Depth
	err := q.call(ctx, queueactor.MethodDepth, struct{}{}, &d)
	return d.High + d.Normal, err
}

// enqueue adds n entries. They are assignments of tasks that do not exist: a worker
// that is handed one finds no task record and drops it, which is the whole dequeue
// path (queue turn and lease, push to a slot, the lease released, slot offered again)
// without running a task. They are second attempts: a first attempt's record may
// still be on its way, and a worker waits for it (task.RecordGrace), where a later
// attempt's missing record means the task does not exist.
func (q queueClient) enqueue(ctx context.Context, n int) error {
	as := make([]task.Assignment, n)
	for i := range as {
		as[i] = task.Assignment{TaskID: uuid.New(), Attempt: 2, Priority: task.PriorityNormal}
	}
	var reply queueactor.EnqueueReply
	if err := q.call(ctx, queueactor.MethodEnqueue, queueactor.EnqueueRequest{Assignments: as}, &reply); err != nil {
		return err
	}
	if reply.Dispatched != 0 {
		return fmt.Errorf("queue dispatched %d entries: a worker slot was idle", reply.Dispatched)
	}
	return nil
}

// fill enqueues entries in batches until depth is at least want, and returns the
// entries added per second.
func (q queueClient) fill(ctx context.Context, want uint64) (float64, error) {
	have, err := q.depth(ctx)
	if err != nil {
		return 0, err
	}
	start, added := time.Now(), 0
	for have < want {
		n := int(min(want-have, fillBatch))
		if err := q.enqueue(ctx, n); err != nil {
			return 0, err
		}
		have += uint64(n)
		added += n
	}
	return float64(added) / time.Since(start).Seconds(), nil
}

// depth measures the queue with DepthSmall and then DepthLarge tasks waiting: the
// latency of one enqueue call, and the rate of dequeues to the worker slots of both
// nodes. It repeats each measurement Config.Runs times itself (the queue only grows from
// the small depth to the large one), and reports the apps' and Redis's memory with the
// large depth waiting. The worker nodes stay stopped afterwards (the queue is full of
// entries no one needs): it runs last.
func depth(ctx context.Context, e *Env) ([]Measure, error) {
	st, c := e.Stack, e.Config
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	q := queueClient{sidecar: st.App("gateway").SidecarClient()}
	workers := st.Running("worker")
	stopWorkers := func() {
		for _, in := range workers {
			in.Stop()
		}
	}
	stopWorkers()

	var ms []Measure
	for _, d := range []int{c.DepthSmall, c.DepthLarge} {
		label := fmt.Sprintf("%d waiting: ", d)
		// Each run puts DepthSamples in and takes DepthSamples out while it measures, and
		// what the nodes take while they start (up to twice that, see drain): fill so that
		// the depth stays at d or more throughout.
		rate, err := q.fill(ctx, uint64(d+c.DepthSamples+c.Runs*2*c.DepthSamples))
		if err != nil {
			return nil, err
		}
		if d == c.DepthLarge {
			ms = append(ms, Measure{fmt.Sprintf("fill to %d (batches of %d)", d, fillBatch), "entries/s", rate})
		}
		for range c.Runs {
			var took []time.Duration
			for range c.DepthSamples {
				began := time.Now()
				if err := q.enqueue(ctx, 1); err != nil {
					return nil, err
				}
				took = append(took, time.Since(began))
			}
			ms = append(ms, latencies(label+"enqueue", took, false)...)
			rate, err := drain(ctx, q, workers, c.DepthSamples)
			stopWorkers()
			if err != nil {
				return nil, err
			}
			ms = append(ms, Measure{label + fmt.Sprintf("dequeue to %d slots", len(workers)*c.WorkersPerNode), "tasks/s", rate})
		}
	}
	ms = append(ms, memory(st, "VmRSS", fmt.Sprintf("RSS at %d waiting:", c.DepthLarge))...)
	if redis := st.Service("redis"); redis != nil {
		if v, err := procMemory(redis.PID(), "VmRSS"); err == nil {
			ms = append(ms, Measure{fmt.Sprintf("RSS at %d waiting: redis", c.DepthLarge), "MiB", v})
		}
	}
	return ms, nil
}

// drain starts the worker nodes together and, once every one is ready, returns how many
// entries per second they take from the queue until n more were taken. Measured from the
// first dequeue with the nodes started one after another, it measured a node's start more
// than the queue: the first node took most of the entries alone while the second started,
// and a run now and then took 2 to 500 a second where the others took 1,400 to 3,300
// (docs/benchmarks-history.md, "The nineteenth session").
func drain(ctx context.Context, q queueClient, workers []*stacktest.Instance, n int) (float64, error) {
	started := make(chan error, len(workers))
	for _, in := range workers {
		go func() { started <- in.Start(ctx) }()
	}
	for range workers {
		if err := <-started; err != nil {
			return 0, err
		}
	}
	first := time.Now()
	firstDepth, err := q.depth(ctx)
	if err != nil {
		return 0, err
	}
	for {
		now, err := q.depth(ctx)
		if err != nil {
			return 0, err
		}
		if now+uint64(n) <= firstDepth {
			return float64(firstDepth-now) / time.Since(first).Seconds(), nil
		}
		if err := pause(ctx); err != nil {
			return 0, fmt.Errorf("%d of %d entries dequeued: %w", firstDepth-now, n, err)
		}
	}
}
