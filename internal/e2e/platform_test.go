package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/sidecar"
	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/task"
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
	for _, retention := range []time.Duration{0, time.Hour} { // terminal writes in transactions, or saved alone
		t.Run(fmt.Sprintf("retention %v", retention), func(t *testing.T) {
			contract.TestRecords(t, taskstore.New(client, components.StateStore, taskstore.WithRetention(retention)))
		})
	}
}

// Retention on the real sidecar and Redis (taskstore.WithRetention): a record made terminal
// expires, in a batch or alone, one still running does not, an idempotency key does from
// its claim; a terminal write refused for its ETag leaves no expiry on the version that
// won, where the same write with its expiry in a state transaction does (the reason a
// batch's expiries follow it once it has landed); and an expired record is gone.
func TestRetentionThroughSidecar(t *testing.T) {
	st := stacktest.Get(t)
	client, err := sidecar.New(st.App("worker").Sidecar())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := t.Context()
	store := taskstore.New(client, components.StateStore, taskstore.WithRetention(time.Hour))
	now := time.Now()
	mk := func(s *taskstore.Store) task.Record {
		rec, _ := task.Accept(task.Record{ID: uuid.New(), Type: "noop", Directory: "retention", MaxAttempts: 3}, now)
		if err := s.Create(ctx, rec); err != nil {
			t.Fatalf("create: %v", err)
		}
		return rec
	}
	ttl := func(k string) int64 {
		t.Helper()
		v, err := st.RedisTTL(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	to := func(status task.Status) func(*task.Record) error {
		return func(r *task.Record) error { r.Status = status; return nil }
	}
	expiresWithinTheHour := func(v int64) bool { return v > 3500 && v <= 3600 }

	running, completed, cancelled := mk(store), mk(store), mk(store)
	res := store.UpdateMany(ctx, []uuid.UUID{running.ID, completed.ID}, func(r *task.Record) error {
		if r.ID == running.ID {
			r.Status = task.StatusRunning
		} else {
			r.Status = task.StatusCompleted
		}
		return nil
	})
	if !res[0].Changed || !res[1].Changed {
		t.Fatalf("batch: %+v", res)
	}
	if _, changed, err := store.Update(ctx, cancelled.ID, to(task.StatusCancelled)); !changed || err != nil {
		t.Fatalf("cancel: %v, %v", changed, err)
	}
	// A batch's terminal records get their expiry just after it, in the background.
	if v, err := st.AwaitRedisTTL(ctx, "task-"+completed.ID.String()); err != nil || !expiresWithinTheHour(v) {
		t.Errorf("record completed in a batch: TTL %d, want about 3600", v)
	}
	// ... in a transaction naming the version the batch wrote: its ETag read plus one
	// (state.redis's versions) before, plus two after; the bytes unchanged.
	if got, etag, err := store.Get(ctx, completed.ID); err != nil || got.Status != task.StatusCompleted || etag != "3" {
		t.Errorf("completed record: %s, ETag %q, %v; want completed, ETag 3 (created, completed, given its expiry)", got.Status, etag, err)
	}
	if v := ttl("task-" + running.ID.String()); v != -1 {
		t.Errorf("running record: TTL %d, want none (-1)", v)
	}
	if v := ttl("task-" + cancelled.ID.String()); !expiresWithinTheHour(v) {
		t.Errorf("record cancelled alone: TTL %d, want about 3600", v)
	}
	key := "retention-" + uuid.NewString()
	if _, claimed, err := store.ClaimIdempotencyKey(ctx, key, uuid.New()); !claimed || err != nil {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	sum := sha256.Sum256([]byte(key))
	if v := ttl("idempotency-" + hex.EncodeToString(sum[:])); !expiresWithinTheHour(v) {
		t.Errorf("idempotency key: TTL %d, want about 3600", v)
	}

	t.Run("a refused terminal write leaves no expiry", func(t *testing.T) {
		rec := mk(store)
		read := store.Prefetch(ctx, []uuid.UUID{rec.ID})
		if _, _, err := store.Update(ctx, rec.ID, to(task.StatusRunning)); err != nil { // another writer, between
			t.Fatal(err)
		}
		res := store.UpdateManyRead(ctx, []uuid.UUID{rec.ID}, read, func(r *task.Record) error {
			if r.Status == task.StatusRunning {
				return task.ErrStale
			}
			r.Status = task.StatusCompleted
			return nil
		})
		if res[0].Changed || !errors.Is(res[0].Err, task.ErrStale) {
			t.Fatalf("the write: changed %v, %v; want refused (stale)", res[0].Changed, res[0].Err)
		}
		if v := ttl("task-" + rec.ID.String()); v != -1 {
			t.Errorf("the running record: TTL %d, want none (-1)", v)
		}

		// The same write with its expiry in a state transaction, its ETag stale: Dapr's
		// Redis store refuses the write and sets the expiry all the same.
		cur, etag, err := store.Get(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := store.Update(ctx, rec.ID, func(r *task.Record) error { r.Progress = 0.5; return nil }); err != nil {
			t.Fatal(err)
		}
		cur.Status = task.StatusCompleted
		data, _ := json.Marshal(cur)
		err = client.ExecuteStateTransaction(ctx, components.StateStore, nil, []*dapr.StateOperation{{
			Type: dapr.StateOperationTypeUpsert,
			Item: &dapr.SetStateItem{
				Key: "task-" + rec.ID.String(), Value: data, Etag: &dapr.ETag{Value: etag},
				Metadata: map[string]string{"ttlInSeconds": "3600"},
				Options:  &dapr.StateOptions{Concurrency: dapr.StateConcurrencyFirstWrite},
			},
		}})
		if err == nil {
			t.Fatal("a transaction with a stale ETag succeeded")
		}
		if got, _, _ := store.Get(ctx, rec.ID); got.Status != task.StatusRunning {
			t.Fatalf("the record is %s after the refused transaction, want running", got.Status)
		}
		if v := ttl("task-" + rec.ID.String()); !expiresWithinTheHour(v) {
			t.Errorf("after a refused write in a transaction: TTL %d; this test expects Dapr's Redis store to set it anyway (about 3600): if it no longer does, a batch's expiries may go in its own transaction (taskstore.WithRetention)", v)
		}
	})

	t.Run("an expired record is gone", func(t *testing.T) {
		short := taskstore.New(client, components.StateStore, taskstore.WithRetention(time.Second))
		rec := mk(short)
		if res := short.UpdateMany(ctx, []uuid.UUID{rec.ID}, to(task.StatusCompleted)); !res[0].Changed {
			t.Fatalf("complete: %+v", res[0])
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, _, err := short.Get(ctx, rec.ID)
			if errors.Is(err, taskstore.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("record still there 10 s after a retention of 1 s: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
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
