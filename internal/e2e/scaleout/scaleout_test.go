// Package scaleout checks the system with several gateways and worker nodes at once:
// a worker node started mid-run adds its capacity with nothing restarted, and no task
// is dispatched twice or lost.
package scaleout

import (
	"context"
	"encoding/json"
	"net/http"
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
	return stacktest.MustScrapeMetrics(t, base).Sum("taskgrid_worker_attempts_total", `outcome="ok"`, `task="sleep"`)
}

// overview is the part of GET /api/v1/overview this package reads.
type overview struct {
	Source     string `json:"source"`
	Throughput []struct {
		Completed int `json:"completed"`
	} `json:"throughput"`
	Failures struct {
		Recovered      int `json:"recovered"`
		AttemptsFailed int `json:"attempts_failed"`
		Failed         int `json:"failed"`
	} `json:"failures"`
}

func (o overview) completed() int {
	n := 0
	for _, m := range o.Throughput {
		n += m.Completed
	}
	return n
}

func readOverview(ctx context.Context, t *testing.T, g stacktest.Gateway) overview {
	t.Helper()
	resp, err := g.Do(ctx, http.MethodGet, "/api/v1/overview", nil, nil)
	if err != nil || resp.Code != http.StatusOK {
		t.Fatalf("overview: %d %s (%v)", resp.Code, resp.Body, err)
	}
	var o overview
	if err := json.Unmarshal(resp.Body, &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// The overview's completions and failures come from analytics' ledger: every gateway
// shows the same, and a restarted gateway shows what happened before its start.
func TestOverviewIsTheSameOnEveryGatewayAndSurvivesARestart(t *testing.T) {
	st := stacktest.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	for len(st.Apps("gateway")) < 2 {
		if _, err := st.StartApp(ctx, "gateway", nil); err != nil {
			t.Fatal(err)
		}
	}
	gws := st.Apps("gateway")
	a, b := stacktest.Gateway{Base: gws[0].BaseURL()}, stacktest.Gateway{Base: gws[1].BaseURL()}
	before := readOverview(ctx, t, a)
	// Three tasks, one of whose attempts fails once (recovered).
	for _, payload := range []map[string]any{{"ms": 10}, {"ms": 10}, {"ms": 10, "forceFailure": 1}} {
		v, _, err := a.SubmitRetrying(ctx, "sleep", payload, "overview")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WaitStatus(ctx, v.ID, "completed"); err != nil {
			t.Fatal(err)
		}
	}
	// Analytics takes the events in micro-batches: wait until both gateways show them.
	var oa, ob overview
	for {
		oa, ob = readOverview(ctx, t, a), readOverview(ctx, t, b)
		if oa.Source == "analytics" && ob.Source == "analytics" && oa.completed() >= before.completed()+3 &&
			oa.completed() == ob.completed() && oa.Failures == ob.Failures && oa.Failures.Recovered >= before.Failures.Recovered+1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("overviews never agreed: %+v and %+v (before %+v)", oa, ob, before)
		case <-time.After(500 * time.Millisecond):
		}
	}
	// A restarted gateway has counted nothing itself: the figures are analytics'.
	gws[1].Stop()
	if err := gws[1].Start(ctx); err != nil {
		t.Fatal(err)
	}
	after := readOverview(ctx, t, b)
	if after.Source != "analytics" || after.completed() < oa.completed() || after.Failures.Recovered < oa.Failures.Recovered {
		t.Fatalf("after a restart the gateway shows %+v, before it %+v", after, oa)
	}
}
