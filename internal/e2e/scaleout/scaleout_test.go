// Package scaleout checks the system with several gateways and worker nodes at once:
// a worker node started mid-run adds its capacity with nothing restarted, and no task
// is dispatched twice or lost.
package scaleout

import (
	"context"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

func TestMain(m *testing.M) {
	stacktest.Main(m, stacktest.Options{AppEnv: map[string]map[string]string{"worker": {"POOL_SIZE": "2"}}})
}

func TestTwoGatewaysTwoWorkerNodes(t *testing.T) {
	st := stacktest.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if _, err := st.StartApp(ctx, "gateway", nil); err != nil {
		t.Fatal(err)
	}
	gateways := []stacktest.Gateway{}
	for _, in := range st.Apps("gateway") {
		gateways = append(gateways, stacktest.Gateway{Base: in.BaseURL()})
	}

	const n = 40
	var ids []string
	submit := func(from, to int) {
		for i := from; i < to; i++ {
			// As a client should: a gateway joining moves the queue actor, and a
			// submission meanwhile may be answered 503 (retried with its key).
			v, _, err := gateways[i%len(gateways)].SubmitRetrying(ctx, "sleep", map[string]any{"ms": 150}, "scaleout")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, v.ID)
		}
	}
	// Half the tasks wait in the queue for the first node's two slots; a second node
	// joins while they run and takes its share of the rest.
	submit(0, n/2)
	if _, err := st.StartApp(ctx, "worker", map[string]string{"NODE_ID": "worker-1"}); err != nil {
		t.Fatal(err)
	}
	submit(n/2, n)

	for i, id := range ids {
		v, err := gateways[(i+1)%len(gateways)].WaitStatus(ctx, id, "completed")
		if err != nil {
			t.Fatal(err)
		}
		if v.Attempts != 1 {
			t.Errorf("task %s ran %d attempts, want 1", id, v.Attempts)
		}
	}

	// Every task ran exactly once across the nodes, and the new node did its share.
	var total float64
	perNode := map[string]float64{}
	for _, in := range st.Apps("worker") {
		ran := attempts(t, in.BaseURL())
		perNode[in.Name] = ran
		total += ran
	}
	if total != n {
		t.Errorf("attempts run across nodes = %v, want %d (per node %v)", total, n, perNode)
	}
	for node, ran := range perNode {
		if ran == 0 {
			t.Errorf("node %s ran no task (per node %v)", node, perNode)
		}
	}
}

// attempts reads how many sleep attempts a worker node finished.
func attempts(t *testing.T, base string) float64 {
	t.Helper()
	m, err := stacktest.ScrapeMetrics(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	return m.Sum("taskgrid_worker_attempts_total", `outcome="ok"`, `task="sleep"`)
}
