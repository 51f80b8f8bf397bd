package e2e

import (
	"testing"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// The gateway enqueues into the queue actor it hosts without its sidecar's two legs of
// an actor call (queueactor.Actor.EnqueueHere). What makes that safe is daprd itself:
// it refuses an actor-state transaction of an actor it does not have active, so a
// gateway whose queue moved elsewhere writes nothing. Both halves, on the real stack.
func TestEnqueueHereOnTheRealStack(t *testing.T) {
	st := stacktest.Get(t)
	ctx := t.Context()
	gw := st.Gateway()

	// daprd refuses the write of an actor it has not activated (the queue's fence).
	c := mustSidecar(t, st.App("gateway"))
	stray := "not-active-" + uuid.NewString()
	err := c.SaveStateTransactionally(ctx, components.QueueActor, stray, []*dapr.ActorStateOperation{
		{OperationType: "upsert", Key: "meta", Value: []byte(`{}`)},
	})
	if err == nil {
		t.Fatalf("the gateway's sidecar wrote the state of actor %s/%s, which it has not activated: a gateway that lost the queue could write over it", components.QueueActor, stray)
	}
	t.Logf("refused as it should be: %v", err)

	// Submissions on the gateway that hosts the queue go to it in the process, and run.
	before := enqueuesHere(t, st)
	v, err := gw.Submit(ctx, "noop", map[string]any{}, "e2e/here")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.WaitStatus(ctx, v.ID, "completed"); err != nil {
		t.Fatal(err)
	}
	if after := enqueuesHere(t, st); after <= before {
		t.Fatalf("taskgrid_queue_enqueues_here_total %v → %v: the submission went through the sidecar", before, after)
	}
}

func enqueuesHere(t *testing.T, st *stacktest.Stack) float64 {
	t.Helper()
	return stacktest.MustScrapeMetrics(t, st.App("gateway").BaseURL()).Sum("taskgrid_queue_enqueues_here_total")
}
