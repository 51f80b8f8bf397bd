package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/sidecar"
	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/platform/procs"
	"github.com/taskgrid/taskgrid/internal/testharness/contract"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// Every app answers its health, readiness and metrics endpoints.
func TestAppsServeHealthAndMetrics(t *testing.T) {
	st := stacktest.Get(t)
	for _, id := range stacktest.AllApps {
		t.Run(id, func(t *testing.T) {
			in := st.App(id)
			for _, path := range []string{"/healthz", "/readyz"} {
				if code, body := get(t, in.BaseURL()+path); code != http.StatusOK {
					t.Errorf("GET %s = %d %s", path, code, body)
				}
			}
			code, body := get(t, in.BaseURL()+"/metrics")
			if code != http.StatusOK || !strings.Contains(body, `taskgrid_app_info{app_id="`+id+`"} 1`) {
				t.Errorf("GET /metrics = %d, lacks taskgrid_app_info for %s:\n%.500s", code, id, body)
			}
			// daprd serves its own metrics on its metrics port.
			if code, body := get(t, in.MetricsURL()+"/metrics"); code != http.StatusOK ||
				!strings.Contains(body, "dapr_runtime_component_loaded") {
				t.Errorf("sidecar metrics = %d, lacks dapr_runtime_component_loaded", code)
			}
		})
	}
}

// Each sidecar loaded exactly the components scoped to its app, from components/.
func TestSidecarsLoadTheirComponents(t *testing.T) {
	st := stacktest.Get(t)
	want := map[string][]string{
		"gateway":     {"envsecrets", "fanout", "pubsub", "statestore"},
		"worker":      {"envsecrets", "pubsub", "statestore"},
		"storekeeper": {"envsecrets", "pubsub", "statestore"},
		"analytics":   {"analytics-db", "envsecrets", "pubsub"},
	}
	for id, names := range want {
		t.Run(id, func(t *testing.T) {
			md, err := sidecar.GetMetadata(t.Context(), st.App(id).Sidecar())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range md.Components {
				got = append(got, c.Name)
			}
			slices.Sort(got)
			if !slices.Equal(got, names) || md.ID != id {
				t.Fatalf("sidecar of %s (id %q) loaded %v, want %v", id, md.ID, got, names)
			}
		})
	}
}

// A message published through a sidecar's pub/sub API lands on the Kafka topic.
func TestPublishReachesKafka(t *testing.T) {
	st := stacktest.Get(t)
	marker := uuid.NewString()
	body := fmt.Sprintf(`{"marker":%q}`, marker)
	resp, err := st.App("gateway").SidecarClient().Do(t.Context(), http.MethodPost, "/v1.0/publish/pubsub/"+events.TopicEvents, []byte(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code != http.StatusNoContent {
		t.Fatalf("publish = %d %s", resp.Code, resp.Body)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(st.KafkaAddr), kgo.ConsumeTopics(events.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("message %s not seen on %s within 30s", marker, events.TopicEvents)
		}
		for _, r := range fetches.Records() {
			var ce struct {
				Data   map[string]string `json:"data"`
				Source string            `json:"source"`
				Topic  string            `json:"topic"`
			}
			if json.Unmarshal(r.Value, &ce) == nil && ce.Data["marker"] == marker {
				if ce.Source != "gateway" || ce.Topic != events.TopicEvents {
					t.Fatalf("cloud event source %q topic %q, want gateway and %s", ce.Source, ce.Topic, events.TopicEvents)
				}
				return
			}
		}
	}
}

// The state store (Redis) round-trips through a sidecar.
func TestStateStoreThroughSidecar(t *testing.T) {
	st := stacktest.Get(t)
	sc := st.App("worker").SidecarClient()
	base := "/v1.0/state/statestore"
	key, value := "platform-test-"+uuid.NewString(), `{"hello":"world"}`
	resp, err := sc.Do(t.Context(), http.MethodPost, base, fmt.Appendf(nil, `[{"key":%q,"value":%s}]`, key, value), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code != http.StatusNoContent {
		t.Fatalf("save state = %d %s", resp.Code, resp.Body)
	}
	if resp, err := sc.Do(t.Context(), http.MethodGet, base+"/"+key, nil, nil); err != nil || resp.Code != http.StatusOK || strings.TrimSpace(string(resp.Body)) != value {
		t.Fatalf("get state = %d %q (%v), want %q", resp.Code, resp.Body, err, value)
	}
}

// The MySQL output binding executes statements against MariaDB, as the analytics
// user, and what it writes is in the database.
func TestMySQLBindingThroughSidecar(t *testing.T) {
	st := stacktest.Get(t)
	sc := st.App("analytics").SidecarClient()
	postJSON := func(t *testing.T, path string, v any) (int, string) {
		t.Helper()
		data, _ := json.Marshal(v)
		resp, err := sc.Do(t.Context(), http.MethodPost, path, data, nil)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return resp.Code, string(resp.Body)
	}
	url := "/v1.0/bindings/analytics-db"
	table := "platform_test_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	for _, req := range []map[string]any{
		{"operation": "exec", "metadata": map[string]string{"sql": "CREATE TABLE " + table + " (id INT PRIMARY KEY, v VARCHAR(20))"}},
		{"operation": "exec", "metadata": map[string]string{"sql": "INSERT INTO " + table + " VALUES (?, ?)", "params": `[1, "one"]`}},
	} {
		if code, body := postJSON(t, url, req); code != http.StatusOK && code != http.StatusNoContent {
			t.Fatalf("binding %v = %d %s", req, code, body)
		}
	}
	code, body := postJSON(t, url, map[string]any{"operation": "query", "metadata": map[string]string{"sql": "SELECT id, v FROM " + table}})
	if code != http.StatusOK || !strings.Contains(body, `"one"`) {
		t.Fatalf("binding query = %d %s", code, body)
	}

	db, err := sql.Open("mysql", st.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(t.Context(), "SELECT v FROM "+table+" WHERE id = 1").Scan(&v); err != nil || v != "one" {
		t.Fatalf("row written through the binding: %q, %v", v, err)
	}
	if _, err := db.ExecContext(t.Context(), "DROP TABLE "+table); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The task records through a real sidecar keep the contract the unit tests' fakes keep.
func TestRecordsContractThroughSidecar(t *testing.T) {
	st := stacktest.Get(t)
	in := st.App("worker")
	client, err := sidecar.New(in.Sidecar())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	contract.TestRecords(t, taskstore.New(client, components.StateStore))
}

// Every Go process of the stack runs with the cores package procs gives it (the stack
// shares one machine): one, but the gateway's app and sidecar and the worker apps.
func TestProcessesGetTheirCores(t *testing.T) {
	st := stacktest.Get(t)
	environ := func(p *stacktest.Proc) string {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID()))
		if err != nil {
			t.Fatalf("environment of %s: %v", p.Name, err)
		}
		for kv := range strings.SplitSeq(string(data), "\x00") {
			if v, ok := strings.CutPrefix(kv, procs.Env+"="); ok {
				return v
			}
		}
		return ""
	}
	want := procs.For
	if procs.Chosen(os.Environ()) { // set for the test run: every process takes it
		want = func(string, bool) string { return os.Getenv(procs.Env) }
	}
	for _, id := range stacktest.AllApps {
		in := st.App(id)
		if got, want := environ(in.App), want(id, false); got != want {
			t.Errorf("%s app: %s=%q, want %q", id, procs.Env, got, want)
		}
		if got, want := environ(in.Daprd), want(id, true); got != want {
			t.Errorf("%s sidecar: %s=%q, want %q", id, procs.Env, got, want)
		}
	}
	for _, name := range []string{"placement", "scheduler", "kafka"} {
		p := st.Service(name)
		if p == nil {
			t.Fatalf("no service %s", name)
		}
		if got, want := environ(p), want("", false); got != want {
			t.Errorf("%s: %s=%q, want %q", name, procs.Env, got, want)
		}
	}
}

// The scheduler writes its identity for its etcd into its stack's own directory, not into
// the directory every scheduler on the machine shares by default: two stacks starting at
// once read each other's halves there ("tls: private key does not match public key"). The
// pair it wrote matches, and is issued under this stack's trust anchors.
func TestSchedulerKeepsItsIdentityToItself(t *testing.T) {
	st := stacktest.Get(t)
	dir := filepath.Join(st.Dir, "data", "scheduler-identity")
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatalf("the scheduler's identity in its stack's directory: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	anchors, err := os.ReadFile(st.TrustAnchors)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	if !roots.AppendCertsFromPEM(anchors) {
		t.Fatalf("no certificate in %s", st.TrustAnchors)
	}
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("the scheduler's certificate is not of this stack's Sentry: %v", err)
	}
}
