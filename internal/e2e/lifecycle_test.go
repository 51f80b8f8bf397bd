package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/sidecar"
	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// A task kind with its expected result (fields of the result JSON).
type taskCase struct {
	task    string
	payload map[string]any
	check   func(result map[string]any) error
}

func field(name string, want any) func(map[string]any) error {
	return func(r map[string]any) error {
		if fmt.Sprint(r[name]) != fmt.Sprint(want) {
			return fmt.Errorf("%s = %v, want %v (result %v)", name, r[name], want, r)
		}
		return nil
	}
}

func mixedCases() []taskCase {
	sum := sha256.Sum256([]byte("abc"))
	return []taskCase{
		{"primes", map[string]any{"limit": 100}, field("count", 25)},
		{"primes", map[string]any{"limit": 100000}, field("count", 9592)},
		{"hash", map[string]any{"data": "abc", "iterations": 1}, field("hex", hex.EncodeToString(sum[:]))},
		{"wordcount", map[string]any{"text": "the cat and the hat"}, field("words", 5)},
		{"sleep", map[string]any{"ms": 100}, field("slept_ms", 100)},
		{"noop", map[string]any{}, func(map[string]any) error { return nil }},
		{"compress", map[string]any{"generate": map[string]any{"size": 10000, "seed": 1, "kind": "zeros"}, "codec": "gzip"}, field("input_bytes", 10000)},
		{"convert", map[string]any{"generate": map[string]any{"width": 16, "height": 8, "pattern": "checker"}, "to": "png"}, field("width", 16)},
	}
}

// 50 tasks of mixed types on a pool of 4: every one completes with the right result,
// each SSE stream gets exactly one completion, and the result file exists when it does.
func TestMixedTasksComplete(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cases := mixedCases()
	completedBefore := metricByLabel(t, st.App("storekeeper").BaseURL(), "taskgrid_tasks_completed_total")
	want := map[string]float64{}

	var wg sync.WaitGroup
	for i := range 50 {
		tc := cases[i%len(cases)]
		want[tc.task]++
		dir := fmt.Sprintf("mixed/%s", tc.task)
		v, err := gw.Submit(ctx, tc.task, tc.payload, dir)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := followToCompletion(ctx, st, gw, v.ID, dir, tc); err != nil {
				t.Errorf("task %d (%s %s): %v", i, tc.task, v.ID, err)
			}
		})
	}
	wg.Wait()

	// The storekeeper counts each completion once, by task type.
	completedAfter := metricByLabel(t, st.App("storekeeper").BaseURL(), "taskgrid_tasks_completed_total")
	for typ, n := range want {
		if got := completedAfter[typ] - completedBefore[typ]; got != n {
			t.Errorf("taskgrid_tasks_completed_total{task=%q} rose by %v, want %v", typ, got, n)
		}
	}
}

// The stream of a task that has already finished sends the final event at once, with
// where the result is, and ends.
func TestFinishedTaskStreamEndsAtOnce(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	v, err := gw.Submit(ctx, "noop", map[string]any{}, "finished")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.WaitStatus(ctx, v.ID, "completed"); err != nil {
		t.Fatal(err)
	}
	events, connected := gw.Events(ctx, v.ID)
	if err := <-connected; err != nil {
		t.Fatal(err)
	}
	var got []stacktest.SSEEvent
	for ev := range events { // ends when the server closes the stream
		got = append(got, ev)
	}
	if ctx.Err() != nil {
		t.Fatal("stream of a finished task did not end by itself")
	}
	if len(got) == 0 || got[len(got)-1].Event != "completed" {
		t.Fatalf("events %v, want the last to be completed", got)
	}
	var data struct {
		Result struct {
			Path string `json:"path"`
		} `json:"result"`
	}
	if err := json.Unmarshal(got[len(got)-1].Data, &data); err != nil || !strings.HasSuffix(data.Result.Path, v.ID+".json") {
		t.Fatalf("completion %s does not say where the result is (%v)", got[len(got)-1].Data, err)
	}
}

// followToCompletion watches a task's SSE stream to its end, then checks the result.
func followToCompletion(ctx context.Context, st *stacktest.Stack, gw stacktest.Gateway, id, dir string, tc taskCase) error {
	events, connected := gw.Events(ctx, id)
	if err := <-connected; err != nil {
		return err
	}
	completions := 0
	var fileSeen bool
	for ev := range events {
		switch ev.Event {
		case "failed":
			return fmt.Errorf("task failed: %s", ev.Data)
		case "completed":
			completions++
			// The completion is sent only once the result is safely on disk.
			_, err := os.Stat(filepath.Join(st.ResultsRoot, dir, id+".json"))
			fileSeen = err == nil
		}
	}
	if completions != 1 {
		return fmt.Errorf("%d completion events, want exactly 1", completions)
	}
	if !fileSeen {
		return fmt.Errorf("completion event arrived before %s/%s.json existed", dir, id)
	}
	resp, err := gw.Do(ctx, http.MethodGet, "/api/v1/tasks/"+id+"/result", nil, nil)
	if err != nil || resp.Code != http.StatusOK {
		return fmt.Errorf("GET result: %d %s %v", resp.Code, resp.Body, err)
	}
	var result map[string]any
	if err := json.Unmarshal(resp.Body, &result); err != nil {
		return fmt.Errorf("result is not JSON: %s", resp.Body)
	}
	onDisk, err := os.ReadFile(filepath.Join(st.ResultsRoot, dir, id+".json"))
	if err != nil || string(onDisk) != string(resp.Body) {
		return fmt.Errorf("API result differs from the file on disk (%v)", err)
	}
	return tc.check(result)
}

// Every refused request gets its 4xx with a clear JSON error, and queues nothing.
func TestBadInputQueuesNothing(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx := t.Context()
	before := acceptedCount(t, st)

	tests := []struct {
		name, body  string
		contentType string
		code        int
		errCode     string
		mention     string
	}{
		{"malformed JSON", `{"task": "primes",`, "", 400, "invalid_json", ""},
		{"unknown task type", `{"task":"mine-bitcoin","payload":{},"directory":"d"}`, "", 400, "unknown_task_type", "primes"},
		{"payload out of range", `{"task":"primes","payload":{"limit":1},"directory":"d"}`, "", 422, "invalid_payload", "limit"},
		{"payload field missing", `{"task":"primes","payload":{},"directory":"d"}`, "", 422, "invalid_payload", "limit"},
		{"absolute directory", `{"task":"noop","payload":{},"directory":"/etc"}`, "", 400, "invalid_directory", ""},
		{"directory with ..", `{"task":"noop","payload":{},"directory":"a/../../b"}`, "", 400, "invalid_directory", ""},
		{"empty directory", `{"task":"noop","payload":{},"directory":""}`, "", 400, "", "directory"},
		{"directory too long", `{"task":"noop","payload":{},"directory":"` + strings.Repeat("a", 300) + `"}`, "", 400, "invalid_directory", ""},
		{"unsafe characters", `{"task":"noop","payload":{},"directory":"a b;rm"}`, "", 400, "invalid_directory", ""},
		{"body too large", `{"task":"hash","payload":{"data":"` + strings.Repeat("x", 20<<20) + `"},"directory":"d"}`, "", 413, "body_too_large", ""},
		{"not JSON content type", `task=noop`, "text/plain", 415, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.contentType != "" {
				hdr["Content-Type"] = tt.contentType
			}
			resp, err := gw.Do(ctx, http.MethodPost, "/api/v1/tasks", []byte(tt.body), hdr)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Error struct {
					Code    string          `json:"code"`
					Message string          `json:"message"`
					Details json.RawMessage `json:"details"`
				} `json:"error"`
			}
			if err := json.Unmarshal(resp.Body, &body); err != nil || body.Error.Message == "" {
				t.Fatalf("%d %.300s: not a JSON error (%v)", resp.Code, resp.Body, err)
			}
			if resp.Code != tt.code || (tt.errCode != "" && body.Error.Code != tt.errCode) {
				t.Fatalf("= %d %s, want %d %s (%s)", resp.Code, body.Error.Code, tt.code, tt.errCode, body.Error.Message)
			}
			if all := body.Error.Message + string(body.Error.Details); !strings.Contains(all, tt.mention) {
				t.Fatalf("error %q does not mention %q", all, tt.mention)
			}
		})
	}
	for _, path := range []string{"/api/v1/tasks/not-a-uuid", "/api/v1/tasks/" + uuid.NewString()} {
		resp, err := gw.Do(ctx, http.MethodGet, path, nil, nil)
		want := map[bool]int{true: 400, false: 404}[strings.HasSuffix(path, "not-a-uuid")]
		if err != nil || resp.Code != want {
			t.Errorf("GET %s = %d, want %d", path, resp.Code, want)
		}
	}
	if after := acceptedCount(t, st); after != before {
		t.Fatalf("refused requests queued tasks: accepted %v → %v", before, after)
	}
}

// acceptedCount reads the gateway's count of accepted tasks.
func acceptedCount(t *testing.T, st *stacktest.Stack) float64 {
	t.Helper()
	var total float64
	for _, v := range metricByLabel(t, st.App("gateway").BaseURL(), "taskgrid_tasks_submitted_total") {
		total += v
	}
	return total
}

// metricByLabel reads a counter with one label from an app's /metrics, by label value.
func metricByLabel(t *testing.T, base, name string) map[string]float64 {
	t.Helper()
	return stacktest.MustScrapeMetrics(t, base).ByLabel(name)
}

// A repeated Idempotency-Key gives the same task, once.
func TestIdempotencyKey(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	key := map[string]string{"Idempotency-Key": "e2e-" + uuid.NewString()}
	body := []byte(`{"task":"noop","payload":{},"directory":"idem"}`)
	before := acceptedCount(t, st)
	var ids []string
	for i := range 3 {
		resp, err := gw.Do(t.Context(), http.MethodPost, "/api/v1/tasks", body, key)
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool]int{true: http.StatusAccepted, false: http.StatusOK}[i == 0]
		var v stacktest.TaskView
		if resp.Code != want || json.Unmarshal(resp.Body, &v) != nil {
			t.Fatalf("request %d = %d %s, want %d", i, resp.Code, resp.Body, want)
		}
		ids = append(ids, v.ID)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("ids %v, want one task", ids)
	}
	if after := acceptedCount(t, st); after != before+1 {
		t.Fatalf("accepted %v → %v, want one more", before, after)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := gw.WaitStatus(ctx, ids[0], "completed"); err != nil {
		t.Fatal(err)
	}
	// The completed record expires TASK_RETENTION (24 h by default) after its completion,
	// the key as long after its claim (taskstore.WithRetention).
	sum := sha256.Sum256([]byte(key["Idempotency-Key"]))
	for _, k := range []string{"task-" + ids[0], "idempotency-" + hex.EncodeToString(sum[:])} {
		if v, err := st.AwaitRedisTTL(ctx, k); err != nil || v <= 86400-120 || v > 86400 {
			t.Errorf("%s: TTL %d s (%v), want about a day", k, v, err)
		}
	}
}

// Killing the gateway (which hosts the queue) mid-run and starting it again loses no
// accepted task.
func TestGatewayKilledMidRunLosesNothing(t *testing.T) {
	st := stacktest.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	gw := st.Gateway()
	var ids []string
	for range 24 {
		v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 200}, "gateway-restart")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	in := st.App("gateway")
	in.App.Kill()
	if err := in.StartApp(ctx); err != nil {
		t.Fatal(err)
	}
	gw = st.Gateway()
	for _, id := range ids {
		if _, err := gw.WaitStatus(ctx, id, "completed"); err != nil {
			t.Fatal(err)
		}
	}
}

// A submission and a result larger than a sidecar takes by default (4 MiB): a noise
// image of about 4.8 MB converted to PNG. The submission is accepted (its payload goes
// through the gateway's sidecar whole, under a key of its own), the result file of about the same size goes
// through two sidecars to the storekeeper, and the task completes once, its file on
// disk what the result says.
func TestLargePayloadAndResult(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const side = 1100
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.Uint32())
	}
	var src bytes.Buffer
	if err := png.Encode(&src, img); err != nil {
		t.Fatal(err)
	}
	if src.Len() <= 4<<20 {
		t.Fatalf("the image is %d bytes: want more than a sidecar takes by default", src.Len())
	}
	dir := "large"
	payload := map[string]any{"image": base64.StdEncoding.EncodeToString(src.Bytes()), "to": "png"}
	v, err := gw.Submit(ctx, "convert", payload, dir)
	if err != nil {
		t.Fatalf("submit a %d-byte image: %v", src.Len(), err)
	}
	var out struct {
		Width, Height, Bytes int
		SHA256               string
	}
	tc := taskCase{"convert", payload, func(r map[string]any) error {
		data, _ := json.Marshal(r)
		return json.Unmarshal(data, &out)
	}}
	if err := followToCompletion(ctx, st, gw, v.ID, dir, tc); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(st.ResultsRoot, dir, v.ID+".png"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	if out.Width != side || out.Height != side || out.Bytes != len(file) || out.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("result %+v; the file on disk is %d bytes, sha256 %x", out, len(file), sum)
	}
	if len(file) <= 4<<20 {
		t.Errorf("the result file is %d bytes: want more than a sidecar takes by default", len(file))
	}
	// The record keeps the payload apart: its start and completion wrote a few hundred
	// bytes, not the image.
	client, err := sidecar.New(st.App("worker").Sidecar())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	store := taskstore.New(client, components.StateStore)
	rec, _, err := store.Get(ctx, uuid.MustParse(v.ID))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != task.StatusCompleted || rec.PayloadKey == "" || len(rec.Payload) != 0 {
		t.Errorf("record %s with payload key %q and %d bytes of payload; want completed, its payload apart", rec.Status, rec.PayloadKey, len(rec.Payload))
	}
	// Completed, the task needs its payload no more: it was removed with the completion.
	if p, err := store.Payload(ctx, rec); !errors.Is(err, taskstore.ErrNotFound) {
		t.Errorf("the payload of the completed task: %d bytes, %v; want it removed", len(p), err)
	}
}
