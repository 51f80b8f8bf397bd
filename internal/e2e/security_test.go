package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/queueactor"
	"github.com/taskgrid/taskgrid/internal/adapters/sidecar"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// A result forged by anyone but the worker's sidecar is refused, on either of the
// storekeeper's ports, and changes nothing: the task completes with its real result.
func TestForgedResultIsRefused(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx := t.Context()
	v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 1500}, "sec/forged")
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.MustParse(v.ID)
	forged, _ := json.Marshal(task.StoreBatch{Results: []task.StoreRequest{{
		TaskID: id, Attempt: 1, Directory: "sec/forged", Worker: "evil",
		Output: json.RawMessage(`{"forged":true}`), StartedAt: time.Now().UTC(),
	}}})
	sk := st.App("storekeeper")
	tests := []struct {
		name   string
		client stacktest.Gateway
		header map[string]string
		want   int
	}{
		{"app channel without the token", stacktest.Gateway{Base: sk.ChannelURL()}, nil, http.StatusUnauthorized},
		{"app channel with a wrong token", stacktest.Gateway{Base: sk.ChannelURL()}, map[string]string{"dapr-api-token": st.DaprToken.Reveal()}, http.StatusUnauthorized},
		{"public port", stacktest.Gateway{Base: sk.BaseURL()}, nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		resp, err := tt.client.Do(ctx, http.MethodPost, "/results", forged, tt.header)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code != tt.want {
			t.Errorf("%s: POST /results = %d %s, want %d", tt.name, resp.Code, resp.Body, tt.want)
		}
	}
	done, err := gw.WaitStatus(ctx, v.ID, "completed", "failed")
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != "completed" || done.Worker == "evil" {
		t.Fatalf("task ended %s by %q: the forged result got through", done.Status, done.Worker)
	}
	resp, err := gw.Do(ctx, http.MethodGet, "/api/v1/tasks/"+v.ID+"/result", nil, nil)
	if err != nil || resp.Code != http.StatusOK || strings.Contains(string(resp.Body), "forged") {
		t.Fatalf("stored result %d %s (%v): want the real one", resp.Code, resp.Body, err)
	}
}

// The queue actor's methods are not reachable but through the gateway's sidecar: not on
// the public port, not on the app channel without the token. Calls there change nothing.
func TestQueueIsNotReachableFromOutside(t *testing.T) {
	st := stacktest.Get(t)
	ctx := t.Context()
	q := queueactor.Client{Invoker: mustSidecar(t, st.App("gateway"))}
	before, err := q.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.IdleSlots) == 0 {
		t.Fatalf("snapshot %+v: want idle slots to protect", before)
	}
	gw := st.App("gateway")
	body, _ := json.Marshal(map[string]any{"slots": before.IdleSlots})
	path := "/actors/" + components.QueueActor + "/" + queueactor.DefaultID + "/method/"
	for _, c := range []struct {
		name string
		base string
		want int
	}{
		{"public port", gw.BaseURL(), http.StatusNotFound},
		{"app channel without the token", gw.ChannelURL(), http.StatusUnauthorized},
	} {
		for _, method := range []string{"retire", "snapshot", "enqueue"} {
			resp, err := stacktest.Gateway{Base: c.base}.Do(ctx, http.MethodPut, path+method, body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Code != c.want {
				t.Errorf("%s: PUT %s = %d %s, want %d", c.name, method, resp.Code, resp.Body, c.want)
			}
		}
	}
	after, err := q.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Every slot idle before still is (a retire would take it, an enqueue give it work).
	// One more may be idle after: a task of the test before that ended meanwhile, its
	// node reporting the slot free at its next sync.
	for _, s := range before.IdleSlots {
		if !slices.Contains(after.IdleSlots, s) {
			t.Fatalf("idle slots %v after the calls, were %v: %s was taken", after.IdleSlots, before.IdleSlots, s)
		}
	}
}

// Every sidecar refuses its API, HTTP and gRPC, to a caller without the API token.
func TestSidecarAPINeedsTheToken(t *testing.T) {
	st := stacktest.Get(t)
	ctx := t.Context()
	for _, id := range []string{"gateway", "worker", "storekeeper", "analytics"} {
		in := st.App(id)
		for _, c := range []struct {
			method, path string
			body         string
		}{
			{http.MethodGet, "/v1.0/metadata", ""},
			{http.MethodPost, "/v1.0/publish/pubsub/" + "task-events", `{"x":1}`},
			{http.MethodGet, "/v1.0/state/statestore/some-key", ""},
			{http.MethodPost, "/v1.0/invoke/storekeeper/method/results", `{"results":[]}`},
		} {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			resp, err := stacktest.Gateway{Base: in.SidecarURL()}.Do(ctx, c.method, c.path, body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Code != http.StatusUnauthorized {
				t.Errorf("%s sidecar: %s %s without the token = %d %s, want 401", id, c.method, c.path, resp.Code, resp.Body)
			}
		}
		// The same sidecar answers with the token (the check is the token, not the route).
		if resp, err := in.SidecarClient().Do(ctx, http.MethodGet, "/v1.0/metadata", nil, nil); err != nil || resp.Code != http.StatusOK {
			t.Errorf("%s sidecar: metadata with the token = %d (%v), want 200", id, resp.Code, err)
		}
		cfg := in.Sidecar()
		cfg.APIToken = ""
		client, err := sidecar.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.GetMetadata(ctx)
		client.Close()
		if err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
			t.Errorf("%s sidecar: gRPC metadata without the token: %v, want Unauthenticated", id, err)
		}
	}
}

func mustSidecar(t *testing.T, in *stacktest.Instance) *sidecar.Client {
	t.Helper()
	c, err := sidecar.New(in.Sidecar())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Service invocation between sidecars follows the access control policies (the caller
// known by its mTLS certificate): only the worker stores results, only the gateway reads
// them.
func TestInvocationFollowsAccessControl(t *testing.T) {
	st := stacktest.Get(t)
	ctx := t.Context()
	body := []byte(`{"results":[]}`)
	missing := "/v1.0/invoke/storekeeper/method/results/" + uuid.NewString()
	tests := []struct {
		caller, method, path string
		denied               bool
	}{
		{"worker", http.MethodPost, "/v1.0/invoke/storekeeper/method/results", false},
		{"gateway", http.MethodPost, "/v1.0/invoke/storekeeper/method/results", true},
		{"analytics", http.MethodPost, "/v1.0/invoke/storekeeper/method/results", true},
		{"gateway", http.MethodGet, missing, false},
		{"worker", http.MethodGet, missing, true},
		{"analytics", http.MethodGet, missing, true},
		{"worker", http.MethodGet, "/v1.0/invoke/gateway/method/api/v1/tasks", true},
		{"gateway", http.MethodGet, "/v1.0/invoke/analytics/method/overview", false},
		{"worker", http.MethodGet, "/v1.0/invoke/analytics/method/overview", true},
		{"storekeeper", http.MethodGet, "/v1.0/invoke/analytics/method/overview", true},
	}
	for _, tt := range tests {
		var b []byte
		if tt.method == http.MethodPost {
			b = body
		}
		resp, err := st.App(tt.caller).SidecarClient().Do(ctx, tt.method, tt.path, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		denied := resp.Code == http.StatusForbidden || resp.Code == http.StatusUnauthorized ||
			strings.Contains(string(resp.Body), "access control policy")
		if denied != tt.denied {
			t.Errorf("%s: %s %s = %d %s; denied %v, want %v", tt.caller, tt.method, tt.path, resp.Code, resp.Body, denied, tt.denied)
		}
	}
}
