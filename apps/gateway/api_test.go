package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/catalog"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

const validBody = `{"task":"sleep","payload":{"ms":10},"directory":"results/run-1"}`

// newSubmit returns a POST /api/v1/tasks request with body and content type ("" sends none).
func newSubmit(body, contentType string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/tasks", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// submittedView is the part of a task view the tests read.
type submittedView struct {
	ID         string          `json:"id"`
	Task       string          `json:"task"`
	Status     string          `json:"status"`
	Priority   string          `json:"priority"`
	Attempts   int             `json:"attempts"`
	Directory  string          `json:"directory"`
	Progress   float64         `json:"progress"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	Result     *task.Location  `json:"result"`
	Error      string          `json:"error"`
	Links      json.RawMessage `json:"links"`
}

func decodeView(t *testing.T, body []byte) (submittedView, map[string]json.RawMessage) {
	t.Helper()
	var v submittedView
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %q is not a task view: %v", body, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	return v, raw
}

// builtinNames are the catalog's type names, read from the types themselves.
func builtinNames() []string {
	var names []string
	for _, typ := range catalog.Builtins() {
		names = append(names, typ.Spec().Name)
	}
	return names
}

func TestSubmitAccepted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		key         string
		cfg         *APIConfig
		wantTask    string
		wantPayload string
		wantDir     string
		wantMax     int
	}{
		{"plain", "application/json", validBody, "", nil, "sleep", `{"ms":10}`, "results/run-1", 5},
		{"payload compacted", "application/json", "{\"task\":\"sleep\",\n \"payload\": { \"ms\" : 7 } ,\"directory\":\"d\"}\n\n",
			"", nil, "sleep", `{"ms":7}`, "d", 5},
		{"charset parameter", "application/json; charset=utf-8", validBody, "", nil, "sleep", `{"ms":10}`, "results/run-1", 5},
		{"+json media type", "application/vnd.taskgrid+json", validBody, "", nil, "sleep", `{"ms":10}`, "results/run-1", 5},
		{"no payload", "application/json", `{"task":"noop","directory":"n"}`, "", nil, "noop", `{}`, "n", 5},
		{"null payload", "application/json", `{"task":"noop","payload":null,"directory":"n"}`, "", nil, "noop", `{}`, "n", 5},
		{"common fields", "application/json", `{"task":"primes","payload":{"limit":100,"forceFailure":2,"timeLimitMs":500},"directory":"a/b/c"}`,
			"", nil, "primes", `{"limit":100,"forceFailure":2,"timeLimitMs":500}`, "a/b/c", 5},
		{"longest idempotency key", "application/json", validBody, strings.Repeat("k", 200), nil, "sleep", `{"ms":10}`, "results/run-1", 5},
		{"max attempts from config", "application/json", validBody, "", &APIConfig{MaxAttempts: 3}, "sleep", `{"ms":10}`, "results/run-1", 3},
		{"deepest directory", "application/json", `{"task":"noop","directory":"a/b/c/d/e/f/g/h"}`, "", nil, "noop", `{}`, "a/b/c/d/e/f/g/h", 5},
		{"longest directory", "application/json", `{"task":"noop","directory":"` + strings.Repeat("x", 64) + "/" + strings.Repeat("y", 64) + "/" + strings.Repeat("z", 64) + "/" + strings.Repeat("w", 5) + `"}`,
			"", nil, "noop", `{}`, strings.Repeat("x", 64) + "/" + strings.Repeat("y", 64) + "/" + strings.Repeat("z", 64) + "/" + strings.Repeat("w", 5), 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, tt.cfg)
			req := newSubmit(tt.body, tt.contentType)
			if tt.key != "" {
				req.Header.Set("Idempotency-Key", tt.key)
			}
			before := time.Now().UTC()
			rec := env.serve(req)
			after := time.Now().UTC()

			if rec.Code != http.StatusAccepted {
				t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			v, raw := decodeView(t, rec.Body.Bytes())
			id, err := uuid.Parse(v.ID)
			if err != nil {
				t.Fatalf("id %q is not a UUID: %v", v.ID, err)
			}
			if id.Version() != 4 {
				t.Errorf("id %s has version %d, want a random (v4) UUID", id, id.Version())
			}
			if loc, want := rec.Header().Get("Location"), "/api/v1/tasks/"+v.ID; loc != want {
				t.Errorf("Location = %q, want %q", loc, want)
			}
			if v.Status != "pending" || v.Task != tt.wantTask || v.Directory != tt.wantDir || v.Priority != "normal" ||
				v.Attempts != 0 || v.Progress != 0 {
				t.Errorf("view = %+v, want a pending %s task in %q with normal priority and no attempts", v, tt.wantTask, tt.wantDir)
			}
			if v.CreatedAt.Before(before) || v.CreatedAt.After(after) {
				t.Errorf("created_at = %s, want between %s and %s", v.CreatedAt, before, after)
			}
			if string(raw["started_at"]) != "null" || string(raw["finished_at"]) != "null" {
				t.Errorf("started_at = %s, finished_at = %s, want null for a new task", raw["started_at"], raw["finished_at"])
			}
			for _, absent := range []string{"result", "error"} {
				if _, ok := raw[absent]; ok {
					t.Errorf("view of a pending task has %q: %s", absent, rec.Body)
				}
			}
			wantLinks := fmt.Sprintf(`{"self":"/api/v1/tasks/%[1]s","events":"/api/v1/tasks/%[1]s/events","result":"/api/v1/tasks/%[1]s/result"}`, v.ID)
			if string(v.Links) != wantLinks {
				t.Errorf("links = %s, want %s", v.Links, wantLinks)
			}

			calls := env.backend.submitCalls()
			if len(calls) != 1 {
				t.Fatalf("backend got %d Submit calls, want 1", len(calls))
			}
			got := calls[0]
			if got.rec.ID != id || got.rec.Type != tt.wantTask || string(got.rec.Payload) != tt.wantPayload ||
				got.rec.Directory != tt.wantDir || got.rec.Status != task.StatusPending || got.rec.Priority != task.PriorityNormal ||
				got.rec.MaxAttempts != tt.wantMax || got.rec.Attempts != 0 || got.key != tt.key {
				t.Errorf("backend got record %+v with key %q; want id %s, task %s, payload %s, directory %q, pending, normal, max attempts %d, key %q",
					got.rec, got.key, id, tt.wantTask, tt.wantPayload, tt.wantDir, tt.wantMax, tt.key)
			}
			if got.rec.CreatedAt.Location() != time.UTC {
				t.Errorf("created_at %s is not UTC", got.rec.CreatedAt)
			}
			if n, _ := env.metric(t, "taskgrid_tasks_submitted_total", "task", tt.wantTask); n != 1 {
				t.Errorf("submitted{task=%s} = %v, want 1", tt.wantTask, n)
			}
		})
	}
}

func TestSubmitIdempotencyKey(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	submit := func(body, key string) (int, submittedView, string) {
		t.Helper()
		req := newSubmit(body, "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		rec := env.serve(req)
		v, _ := decodeView(t, rec.Body.Bytes())
		return rec.Code, v, rec.Header().Get("Location")
	}

	code, first, loc := submit(validBody, "order-42")
	if code != http.StatusAccepted {
		t.Fatalf("first submit: status %d, want 202", code)
	}
	if loc != "/api/v1/tasks/"+first.ID {
		t.Fatalf("first submit: Location %q, want the task's path", loc)
	}
	// The task moves on; a repeat answers the first task as it is now.
	firstID := uuid.MustParse(first.ID)
	started := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	stored, err := env.backend.Get(t.Context(), firstID)
	if err != nil {
		t.Fatal(err)
	}
	stored.Status, stored.Attempts, stored.StartedAt = task.StatusRunning, 1, &started
	env.backend.put(stored)

	// A repeat with the same key, even with another body, is the first task: 200, not 202.
	code, again, loc := submit(`{"task":"noop","directory":"other"}`, "order-42")
	if code != http.StatusOK {
		t.Errorf("repeated key: status %d, want 200", code)
	}
	if again.ID != first.ID || loc != "/api/v1/tasks/"+first.ID {
		t.Errorf("repeated key: id %s, Location %q; want the first task %s", again.ID, loc, first.ID)
	}
	if again.Task != "sleep" || again.Status != "running" || again.Attempts != 1 || again.StartedAt == nil || !again.StartedAt.Equal(started) {
		t.Errorf("repeated key: view %+v, want the first (sleep) task as stored now: running, 1 attempt, started %s", again, started)
	}

	code, other, _ := submit(validBody, "order-43")
	if code != http.StatusAccepted || other.ID == first.ID {
		t.Errorf("another key: status %d, id %s; want 202 and a new task (not %s)", code, other.ID, first.ID)
	}
	code1, noKey1, _ := submit(validBody, "")
	code2, noKey2, _ := submit(validBody, "")
	if code1 != http.StatusAccepted || code2 != http.StatusAccepted || noKey1.ID == noKey2.ID {
		t.Errorf("no key twice: statuses %d, %d, ids %s, %s; want two new tasks", code1, code2, noKey1.ID, noKey2.ID)
	}
	if n, _ := env.metric(t, "taskgrid_tasks_submitted_total", "task", "sleep"); n != 4 {
		t.Errorf("submitted{task=sleep} = %v, want 4 (a repeated key is not a new task)", n)
	}
}

func TestSubmitRejected(t *testing.T) {
	t.Parallel()
	names := builtinNames()
	if len(names) == 0 {
		t.Fatal("catalog has no types")
	}
	long := strings.Repeat("a", 201)
	tests := []struct {
		name        string
		contentType string
		header      http.Header
		body        string
		cfg         *APIConfig
		wantStatus  int
		wantCode    string
		wantMsg     []string // substrings of the message
		wantDetails string   // substring of the details JSON, if set
	}{
		// Malformed JSON.
		{name: "syntax error", body: `{"task": sleep}`, wantStatus: 400, wantCode: "invalid_json",
			wantMsg: []string{"not valid JSON", "offset 10"}, wantDetails: `"offset":10`},
		{name: "truncated", body: `{"task":"sleep","payload":{"ms":1}`, wantStatus: 400, wantCode: "invalid_json",
			wantMsg: []string{"ends inside a JSON value"}},
		{name: "empty body", body: "", wantStatus: 400, wantCode: "invalid_json", wantMsg: []string{"empty"}},
		{name: "whitespace body", body: " \n\t", wantStatus: 400, wantCode: "invalid_json", wantMsg: []string{"empty"}},
		{name: "two objects", body: validBody + `{}`, wantStatus: 400, wantCode: "invalid_json",
			wantMsg: []string{"data after the JSON object", "exactly one JSON object"}},
		{name: "garbage after object", body: validBody + ` x`, wantStatus: 400, wantCode: "invalid_json",
			wantMsg: []string{"data after the JSON object"}},
		{name: "array body", body: `[1,2]`, wantStatus: 400, wantCode: "invalid_field_type", wantMsg: []string{"array"}},
		{name: "string body", body: `"sleep"`, wantStatus: 400, wantCode: "invalid_field_type", wantMsg: []string{"string"}},
		{name: "null body", body: `null`, wantStatus: 400, wantCode: "missing_field", wantMsg: []string{`"task"`}},
		// Fields.
		{name: "task not a string", body: `{"task":5,"directory":"d"}`, wantStatus: 400, wantCode: "invalid_field_type",
			wantMsg: []string{`"task"`, "string", "number"}},
		{name: "directory not a string", body: `{"task":"noop","directory":["d"]}`, wantStatus: 400, wantCode: "invalid_field_type",
			wantMsg: []string{`"directory"`, "array"}},
		{name: "unknown field", body: `{"task":"noop","directory":"d","priority":"high"}`, wantStatus: 400, wantCode: "unknown_field",
			wantMsg: []string{`"priority"`, "task, payload, directory"}, wantDetails: `"field":"priority"`},
		{name: "missing task", body: `{"payload":{},"directory":"d"}`, wantStatus: 400, wantCode: "missing_field",
			wantMsg: append([]string{`"task"`}, names...)},
		{name: "empty task", body: `{"task":"","directory":"d"}`, wantStatus: 400, wantCode: "missing_field",
			wantMsg: append([]string{`"task"`}, names...)},
		{name: "missing directory", body: `{"task":"noop"}`, wantStatus: 400, wantCode: "missing_field",
			wantMsg: []string{`"directory"`, "required"}},
		{name: "null directory", body: `{"task":"noop","directory":null}`, wantStatus: 400, wantCode: "missing_field",
			wantMsg: []string{`"directory"`}},
		{name: "unknown task type", body: `{"task":"mine_bitcoin","directory":"d"}`, wantStatus: 400, wantCode: "unknown_task_type",
			wantMsg: append([]string{`"mine_bitcoin"`}, names...), wantDetails: `"known_types"`},
		// Payload.
		{name: "payload a string", body: `{"task":"sleep","payload":"ms=5","directory":"d"}`, wantStatus: 400,
			wantCode: "invalid_field_type", wantMsg: []string{`"payload"`, "a string"}},
		{name: "payload an array", body: `{"task":"sleep","payload":[5],"directory":"d"}`, wantStatus: 400,
			wantCode: "invalid_field_type", wantMsg: []string{`"payload"`, "an array"}},
		{name: "payload field missing", body: `{"task":"sleep","payload":{},"directory":"d"}`, wantStatus: 422,
			wantCode: "invalid_payload", wantMsg: []string{`"sleep"`, "ms", "required"}, wantDetails: `"field":"ms"`},
		{name: "payload field below range", body: `{"task":"sleep","payload":{"ms":-1},"directory":"d"}`, wantStatus: 422,
			wantCode: "invalid_payload", wantMsg: []string{"ms", "between 0 and 600000", "-1"}, wantDetails: `"field":"ms"`},
		{name: "payload field above range", body: `{"task":"sleep","payload":{"ms":600001},"directory":"d"}`, wantStatus: 422,
			wantCode: "invalid_payload", wantMsg: []string{"ms", "600001"}, wantDetails: `"field":"ms"`},
		{name: "payload field wrong type", body: `{"task":"primes","payload":{"limit":"many"},"directory":"d"}`, wantStatus: 422,
			wantCode: "invalid_payload", wantMsg: []string{"limit", "integer"}, wantDetails: `"field":"limit"`},
		{name: "payload limit below range", body: `{"task":"primes","payload":{"limit":1},"directory":"d"}`, wantStatus: 422,
			wantCode: "invalid_payload", wantMsg: []string{"limit", "between 2 and 50000000"}},
		{name: "payload unknown field", body: `{"task":"sleep","payload":{"ms":1,"bogus":true},"directory":"d"}`, wantStatus: 422,
			wantCode: "invalid_payload", wantMsg: []string{"bogus", "not an allowed field"}, wantDetails: `"field":"bogus"`},
		{name: "common field out of range", body: `{"task":"sleep","payload":{"ms":1,"timeLimitMs":0},"directory":"d"}`, wantStatus: 422,
			wantCode: "invalid_payload", wantMsg: []string{"timeLimitMs"}, wantDetails: `"field":"timeLimitMs"`},
		// Directory.
		{name: "absolute directory", body: `{"task":"noop","directory":"/etc/cron.d"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{"relative", "'/'"}, wantDetails: `"field":"directory"`},
		{name: "dot-dot directory", body: `{"task":"noop","directory":"a/../b"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{`".."`}},
		{name: "only dot-dot", body: `{"task":"noop","directory":".."}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{`".."`}},
		{name: "empty directory", body: `{"task":"noop","directory":""}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{"empty"}},
		{name: "too long directory", body: `{"task":"noop","directory":"` + long + `"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{"201 bytes", "at most 200"}},
		{name: "too long segment", body: `{"task":"noop","directory":"` + strings.Repeat("s", 65) + `"}`, wantStatus: 400,
			wantCode: "invalid_directory", wantMsg: []string{"65 bytes"}},
		{name: "too deep directory", body: `{"task":"noop","directory":"a/b/c/d/e/f/g/h/i"}`, wantStatus: 400,
			wantCode: "invalid_directory", wantMsg: []string{"9 segments"}},
		{name: "space in directory", body: `{"task":"noop","directory":"my results"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{"' '", "offset 2"}},
		{name: "backslash in directory", body: `{"task":"noop","directory":"a\\b"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{`contains '\' at offset 1`}},
		{name: "shell character in directory", body: `{"task":"noop","directory":"a;rm"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{"';'"}},
		{name: "control character in directory", body: `{"task":"noop","directory":"a\u0000b"}`, wantStatus: 400,
			wantCode: "invalid_directory", wantMsg: []string{"0x00"}},
		{name: "non-ASCII directory", body: `{"task":"noop","directory":"résumé"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{"non-ASCII"}},
		{name: "hidden directory", body: `{"task":"noop","directory":".ssh"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{"letter or digit"}},
		{name: "drive letter", body: `{"task":"noop","directory":"C:x"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{"drive letter"}},
		{name: "trailing slash", body: `{"task":"noop","directory":"a/"}`, wantStatus: 400, wantCode: "invalid_directory",
			wantMsg: []string{"end with '/'"}},
		// Size.
		{name: "body over the limit", cfg: &APIConfig{MaxBodyBytes: 1024},
			body:       `{"task":"noop","directory":"` + strings.Repeat("a", 2000) + `"}`,
			wantStatus: 413, wantCode: "body_too_large", wantMsg: []string{"1 KiB", "1024 bytes"}, wantDetails: `"limit_bytes":1024`},
		{name: "trailing space over the limit", cfg: &APIConfig{MaxBodyBytes: 1024},
			body:       validBody + strings.Repeat(" ", 1024),
			wantStatus: 413, wantCode: "body_too_large", wantMsg: []string{"1 KiB"}},
		// Content type.
		{name: "text content type", contentType: "text/plain", body: validBody, wantStatus: 415,
			wantCode: "unsupported_media_type", wantMsg: []string{`"text/plain"`, "application/json"}},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: validBody, wantStatus: 415,
			wantCode: "unsupported_media_type", wantMsg: []string{"application/json"}},
		{name: "no content type", contentType: "-", body: validBody, wantStatus: 415,
			wantCode: "unsupported_media_type", wantMsg: []string{"no Content-Type"}},
		{name: "malformed content type", contentType: "application/json; =", body: validBody, wantStatus: 415,
			wantCode: "unsupported_media_type", wantMsg: []string{"application/json"}},
		// Idempotency key.
		{name: "empty idempotency key", header: http.Header{"Idempotency-Key": {""}}, body: validBody, wantStatus: 400,
			wantCode: "invalid_idempotency_key", wantMsg: []string{"empty"}},
		{name: "long idempotency key", header: http.Header{"Idempotency-Key": {strings.Repeat("k", 201)}}, body: validBody,
			wantStatus: 400, wantCode: "invalid_idempotency_key", wantMsg: []string{"201 bytes"}},
		{name: "control byte in idempotency key", header: http.Header{"Idempotency-Key": {"a\tb"}}, body: validBody,
			wantStatus: 400, wantCode: "invalid_idempotency_key", wantMsg: []string{"0x09", "offset 1"}},
		{name: "non-ASCII idempotency key", header: http.Header{"Idempotency-Key": {"ключ"}}, body: validBody,
			wantStatus: 400, wantCode: "invalid_idempotency_key", wantMsg: []string{"offset 0"}},
		{name: "two idempotency keys", header: http.Header{"Idempotency-Key": {"a", "b"}}, body: validBody,
			wantStatus: 400, wantCode: "invalid_idempotency_key", wantMsg: []string{"2 Idempotency-Key headers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, tt.cfg)
			ct := cmpOr(tt.contentType, "application/json")
			if ct == "-" {
				ct = ""
			}
			req := newSubmit(tt.body, ct)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			rec := env.serve(req)
			e := decodeErrorBody(t, rec.Code, rec.Header(), rec.Body.Bytes(), tt.wantStatus, tt.wantCode)
			for _, want := range tt.wantMsg {
				if !strings.Contains(e.Error.Message, want) {
					t.Errorf("message %q does not contain %q", e.Error.Message, want)
				}
			}
			if tt.wantDetails != "" && !strings.Contains(string(e.Error.Details), tt.wantDetails) {
				t.Errorf("details %s do not contain %s", e.Error.Details, tt.wantDetails)
			}
			if calls := env.backend.submitCalls(); len(calls) != 0 {
				t.Errorf("backend got %d Submit calls for a bad request, want none: %+v", len(calls), calls)
			}
			if n, ok := env.metric(t, "taskgrid_tasks_rejected_total", "reason", tt.wantCode); !ok || n != 1 {
				t.Errorf("rejected{reason=%s} = %v (present %v), want 1", tt.wantCode, n, ok)
			}
			for _, name := range builtinNames() {
				if n, _ := env.metric(t, "taskgrid_tasks_submitted_total", "task", name); n != 0 {
					t.Errorf("submitted{task=%s} = %v after a refused request, want 0", name, n)
				}
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestSubmitBodyLimitBoundary checks that a body of exactly MaxBodyBytes is accepted and
// one byte more is refused, whether the extra byte is inside or after the JSON object.
func TestSubmitBodyLimitBoundary(t *testing.T) {
	t.Parallel()
	const limit = 512
	inside := func(n int) string { // a valid body of n bytes, padded inside the object
		return `{"task":"noop","directory":"d"` + strings.Repeat(" ", n-len(`{"task":"noop","directory":"d"}`)) + `}`
	}
	after := func(n int) string { // a valid body of n bytes, padded after the object
		return validBody + strings.Repeat("\n", n-len(validBody))
	}
	for _, tt := range []struct {
		name string
		body string
		want int
	}{
		{"inside, at the limit", inside(limit), http.StatusAccepted},
		{"inside, one over", inside(limit + 1), http.StatusRequestEntityTooLarge},
		{"after, at the limit", after(limit), http.StatusAccepted},
		{"after, one over", after(limit + 1), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, &APIConfig{MaxBodyBytes: limit})
			rec := env.serve(newSubmit(tt.body, "application/json"))
			if rec.Code != tt.want {
				t.Errorf("%d-byte body: status %d, want %d; body %s", len(tt.body), rec.Code, tt.want, rec.Body)
			}
		})
	}
}

func TestSubmitBackendErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		err        error
		wantStatus int
		wantCode   string
	}{
		{"unavailable", ErrUnavailable, 503, "unavailable"},
		{"wrapped unavailable", fmt.Errorf("%w: state store: connection refused (secret-host:6379)", ErrUnavailable), 503, "unavailable"},
		{"other error", errors.New("disk on fire at secret-host:6379"), 500, "internal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, nil)
			env.backend.submitErr = tt.err
			rec := env.serve(newSubmit(validBody, "application/json"))
			e := decodeErrorBody(t, rec.Code, rec.Header(), rec.Body.Bytes(), tt.wantStatus, tt.wantCode)
			if strings.Contains(e.Error.Message, "secret-host") {
				t.Errorf("message %q leaks the backend's error", e.Error.Message)
			}
			if tt.wantStatus == 503 && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if tt.wantStatus != 503 && rec.Header().Get("Retry-After") != "" {
				t.Errorf("%d with Retry-After", tt.wantStatus)
			}
			if len(env.backend.submitCalls()) != 1 {
				t.Errorf("backend got %d Submit calls, want 1", len(env.backend.submitCalls()))
			}
			if n, _ := env.metric(t, "taskgrid_tasks_rejected_total", "reason", tt.wantCode); n != 1 {
				t.Errorf("rejected{reason=%s} = %v, want 1", tt.wantCode, n)
			}
			if n, _ := env.metric(t, "taskgrid_tasks_submitted_total", "task", "sleep"); n != 0 {
				t.Errorf("submitted{task=sleep} = %v, want 0", n)
			}
		})
	}
}

func TestGetTask(t *testing.T) {
	t.Parallel()
	created := time.Date(2031, 5, 6, 7, 8, 9, 123000000, time.UTC)
	started := created.Add(time.Second)
	finished := created.Add(3 * time.Second)
	loc := &task.Location{Directory: "out", Path: "out/x.json", Bytes: 12, SHA256: strings.Repeat("ab", 32)}
	base := task.Record{
		ID: uuid.New(), Type: "sleep", Payload: json.RawMessage(`{"ms":1}`), Directory: "out",
		Priority: task.PriorityNormal, MaxAttempts: 5, CreatedAt: created,
	}
	with := func(f func(*task.Record)) task.Record {
		r := base
		r.ID = uuid.New()
		f(&r)
		return r
	}
	tests := []struct {
		name         string
		rec          task.Record
		wantStarted  bool
		wantFinished bool
		wantProgress float64
		wantResult   bool
		wantError    string
	}{
		{"pending", with(func(r *task.Record) { r.Status = task.StatusPending }), false, false, 0, false, ""},
		{"pending again after a failed attempt", with(func(r *task.Record) {
			r.Status, r.Priority, r.Attempts, r.StartedAt, r.Progress, r.Error = task.StatusPending, task.PriorityHigh, 1, &started, 0.4, "attempt 1 crashed"
		}), false, false, 0, false, ""},
		{"running", with(func(r *task.Record) {
			r.Status, r.Attempts, r.StartedAt, r.Progress = task.StatusRunning, 2, &started, 0.25
		}), true, false, 0.25, false, ""},
		{"completed", with(func(r *task.Record) {
			r.Status, r.Attempts, r.StartedAt, r.FinishedAt, r.Progress, r.Result = task.StatusCompleted, 1, &started, &finished, 1, loc
		}), true, true, 1, true, ""},
		{"failed", with(func(r *task.Record) {
			r.Status, r.Attempts, r.StartedAt, r.FinishedAt, r.Error, r.Result = task.StatusFailed, 5, &started, &finished, "out of attempts", loc
		}), true, true, 0, false, "out of attempts"},
	}
	env := newTestEnv(t, nil)
	for _, tt := range tests {
		env.backend.put(tt.rec)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := env.serve(httptest.NewRequest(http.MethodGet, "/api/v1/tasks/"+tt.rec.ID.String(), nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, want 200; body %s", rec.Code, rec.Body)
			}
			v, raw := decodeView(t, rec.Body.Bytes())
			if v.ID != tt.rec.ID.String() || v.Task != tt.rec.Type || v.Status != string(tt.rec.Status) ||
				v.Priority != string(tt.rec.Priority) || v.Attempts != tt.rec.Attempts || v.Directory != tt.rec.Directory {
				t.Errorf("view %+v does not match record %+v", v, tt.rec)
			}
			if !v.CreatedAt.Equal(created) {
				t.Errorf("created_at %s, want %s", v.CreatedAt, created)
			}
			if got := v.StartedAt != nil && v.StartedAt.Equal(started); got != tt.wantStarted {
				t.Errorf("started_at %s (raw %s), want shown: %v", v.StartedAt, raw["started_at"], tt.wantStarted)
			}
			if got := v.FinishedAt != nil && v.FinishedAt.Equal(finished); got != tt.wantFinished {
				t.Errorf("finished_at %s (raw %s), want shown: %v", v.FinishedAt, raw["finished_at"], tt.wantFinished)
			}
			if v.Progress != tt.wantProgress {
				t.Errorf("progress %v, want %v", v.Progress, tt.wantProgress)
			}
			if got := v.Result != nil && v.Result.Path == loc.Path && v.Result.SHA256 == loc.SHA256; got != tt.wantResult {
				t.Errorf("result %+v, want shown: %v", v.Result, tt.wantResult)
			}
			if v.Error != tt.wantError {
				t.Errorf("error %q, want %q", v.Error, tt.wantError)
			}
			for _, hidden := range []string{"payload", "max_attempts", "worker"} {
				if _, ok := raw[hidden]; ok {
					t.Errorf("view shows internal field %q: %s", hidden, rec.Body)
				}
			}
		})
	}
}

func TestGetTaskErrors(t *testing.T) {
	t.Parallel()
	known := task.Record{ID: uuid.New(), Type: "noop", Status: task.StatusPending, Priority: task.PriorityNormal, Directory: "d"}
	tests := []struct {
		name       string
		path       string
		getErr     error
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"not a UUID", "/api/v1/tasks/12345", nil, 400, "invalid_id", `"12345"`},
		{"UUID with junk", "/api/v1/tasks/" + known.ID.String() + "x", nil, 400, "invalid_id", "not a UUID"},
		{"result of a non-UUID", "/api/v1/tasks/nope/result", nil, 400, "invalid_id", `"nope"`},
		{"events of a non-UUID", "/api/v1/tasks/nope/events", nil, 400, "invalid_id", `"nope"`},
		{"unknown", "/api/v1/tasks/" + uuid.NewString(), nil, 404, "not_found", ""},
		{"result of unknown", "/api/v1/tasks/" + uuid.NewString() + "/result", nil, 404, "not_found", ""},
		{"events of unknown", "/api/v1/tasks/" + uuid.NewString() + "/events", nil, 404, "not_found", ""},
		{"store down", "/api/v1/tasks/" + known.ID.String(), fmt.Errorf("get: %w", ErrUnavailable), 503, "unavailable", "retry"},
		{"store down, events", "/api/v1/tasks/" + known.ID.String() + "/events", ErrUnavailable, 503, "unavailable", "retry"},
		{"store broken", "/api/v1/tasks/" + known.ID.String(), errors.New("boom"), 500, "internal", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, nil)
			env.backend.put(known)
			env.backend.getErr = tt.getErr
			rec := env.serve(httptest.NewRequest(http.MethodGet, tt.path, nil))
			e := decodeErrorBody(t, rec.Code, rec.Header(), rec.Body.Bytes(), tt.wantStatus, tt.wantCode)
			if !strings.Contains(e.Error.Message, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", e.Error.Message, tt.wantMsg)
			}
			if tt.wantStatus == 503 && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if strings.Contains(e.Error.Message, "boom") {
				t.Errorf("message %q leaks an internal error", e.Error.Message)
			}
			if n := env.hub.Clients(); n != 0 {
				t.Errorf("hub has %d clients after a refused request, want 0", n)
			}
			if n, _ := env.metric(t, "taskgrid_sse_clients"); n != 0 {
				t.Errorf("sse_clients = %v after a refused request, want 0", n)
			}
		})
	}
}

func TestGetResult(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	rec := func(status task.Status) task.Record {
		r := task.Record{ID: uuid.New(), Type: "noop", Status: status, Priority: task.PriorityNormal, Directory: "d", CreatedAt: now}
		switch status {
		case task.StatusCompleted:
			r.Result = &task.Location{Directory: "d", Path: "d/" + r.ID.String() + ".json"}
		case task.StatusFailed:
			r.Error = "hash mismatch"
		}
		return r
	}
	tests := []struct {
		name       string
		rec        task.Record
		resultErr  error
		wantStatus int
		wantCode   string // "" for a success
		wantMsg    []string
	}{
		{"pending", rec(task.StatusPending), nil, 409, "task_not_completed", []string{"pending", "/events"}},
		{"running", rec(task.StatusRunning), nil, 409, "task_not_completed", []string{"running", "not completed"}},
		{"failed", rec(task.StatusFailed), nil, 409, "task_failed", []string{"failed", "hash mismatch"}},
		{"cancelled", rec(task.StatusCancelled), nil, 409, "task_cancelled", []string{"cancelled"}},
		{"completed", rec(task.StatusCompleted), nil, 200, "", nil},
		{"completed, storekeeper down", rec(task.StatusCompleted), fmt.Errorf("invoke: %w", ErrUnavailable), 503, "unavailable", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, nil)
			env.backend.put(tt.rec)
			want := fmt.Sprintf(`{"task_id":%q,"output":{"n":42}}`, tt.rec.ID)
			env.backend.results[tt.rec.ID] = []byte(want)
			env.backend.resultErr = tt.resultErr
			rec := env.serve(httptest.NewRequest(http.MethodGet, "/api/v1/tasks/"+tt.rec.ID.String()+"/result", nil))
			if tt.wantCode == "" {
				if rec.Code != http.StatusOK || rec.Body.String() != want || rec.Header().Get("Content-Type") != "application/json" {
					t.Errorf("got %d %q (Content-Type %q), want 200 %q as application/json",
						rec.Code, rec.Body, rec.Header().Get("Content-Type"), want)
				}
				return
			}
			e := decodeErrorBody(t, rec.Code, rec.Header(), rec.Body.Bytes(), tt.wantStatus, tt.wantCode)
			for _, s := range tt.wantMsg {
				if !strings.Contains(e.Error.Message, s) {
					t.Errorf("message %q does not contain %q", e.Error.Message, s)
				}
			}
			if tt.wantStatus == 409 {
				var d struct {
					Status string `json:"status"`
				}
				if err := json.Unmarshal(e.Error.Details, &d); err != nil || d.Status != string(tt.rec.Status) {
					t.Errorf("details %s: want the status %q (%v)", e.Error.Details, tt.rec.Status, err)
				}
			}
		})
	}
}

func TestCancelTask(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	rec := func(status task.Status) task.Record {
		r := task.Record{ID: uuid.New(), Type: "sleep", Status: status, Priority: task.PriorityNormal, Directory: "d", CreatedAt: now, MaxAttempts: 5}
		if status.Terminal() {
			r.FinishedAt = &now
		}
		if status == task.StatusCompleted {
			r.Result = &task.Location{Directory: "d", Path: "d/" + r.ID.String() + ".json"}
		}
		if status != task.StatusPending {
			r.Attempts, r.Worker = 1, "vm/vm-0"
		}
		return r
	}
	tests := []struct {
		name        string
		rec         task.Record
		known       bool // the record is in the backend
		cancelErr   error
		wantStatus  int
		wantCode    string
		wantBackend bool // the backend's Cancel is called
	}{
		{"pending", rec(task.StatusPending), true, nil, 200, "", true},
		{"running", rec(task.StatusRunning), true, nil, 200, "", true},
		{"completed", rec(task.StatusCompleted), true, nil, 409, "task_finished", false},
		{"failed", rec(task.StatusFailed), true, nil, 409, "task_finished", false},
		{"cancelled already", rec(task.StatusCancelled), true, nil, 409, "task_finished", false},
		{"completed meanwhile (the backend's write lost the race)", rec(task.StatusRunning), true, nil, 409, "task_finished", true},
		{"unknown", rec(task.StatusPending), false, nil, 404, "not_found", false},
		{"state store down", rec(task.StatusPending), true, fmt.Errorf("update: %w", ErrUnavailable), 503, "unavailable", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, nil)
			if tt.known {
				env.backend.put(tt.rec)
			}
			env.backend.cancelErr = tt.cancelErr
			if strings.Contains(tt.name, "meanwhile") {
				// The GET saw it running; the record says completed by the time Cancel writes.
				done := rec(task.StatusCompleted)
				done.ID = tt.rec.ID
				env.backend.cancelHook = func() { env.backend.tasks[tt.rec.ID] = done }
			}
			res := env.serve(httptest.NewRequest(http.MethodDelete, "/api/v1/tasks/"+tt.rec.ID.String(), nil))
			if got := len(env.backend.cancels) > 0; got != tt.wantBackend {
				t.Errorf("backend Cancel called: %v, want %v", got, tt.wantBackend)
			}
			if tt.wantCode != "" {
				e := decodeErrorBody(t, res.Code, res.Header(), res.Body.Bytes(), tt.wantStatus, tt.wantCode)
				if tt.wantStatus == 409 {
					var d struct {
						Status string `json:"status"`
					}
					want := tt.rec.Status
					if tt.wantBackend {
						want = task.StatusCompleted
					}
					if err := json.Unmarshal(e.Error.Details, &d); err != nil || d.Status != string(want) {
						t.Errorf("details %s: want the status %q (%v)", e.Error.Details, want, err)
					}
				}
				if after := env.backend.tasks[tt.rec.ID]; tt.known && tt.wantStatus == 409 && after.Status == task.StatusCancelled && tt.rec.Status != task.StatusCancelled {
					t.Errorf("a refused cancel changed the record: %+v", after)
				}
				return
			}
			if res.Code != http.StatusOK {
				t.Fatalf("status %d %s, want 200", res.Code, res.Body)
			}
			v, _ := decodeView(t, res.Body.Bytes())
			if v.Status != "cancelled" || v.FinishedAt == nil || v.Result != nil || v.Error != "" {
				t.Errorf("view %+v, want cancelled with its finish time", v)
			}
			if got := env.backend.tasks[tt.rec.ID].Status; got != task.StatusCancelled {
				t.Errorf("record status %s", got)
			}
		})
	}
}

func TestTaskTypes(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	rec := env.serve(httptest.NewRequest(http.MethodGet, "/api/v1/task-types", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q; want 200 application/json", rec.Code, rec.Header().Get("Content-Type"))
	}
	var body struct {
		TaskTypes []struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Fields      []catalog.Field `json:"fields"`
			Example     json.RawMessage `json:"example"`
			TimeLimitMs int64           `json:"time_limit_ms"`
		} `json:"task_types"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}

	want := map[string]catalog.Spec{}
	for _, typ := range catalog.Builtins() {
		want[typ.Spec().Name] = typ.Spec()
	}
	var got []string
	reg := catalog.Default()
	for _, tt := range body.TaskTypes {
		got = append(got, tt.Name)
		spec, ok := want[tt.Name]
		if !ok {
			t.Errorf("listed type %q is not a built-in type", tt.Name)
			continue
		}
		if tt.Description != spec.Description || tt.TimeLimitMs != spec.TimeLimit.Milliseconds() {
			t.Errorf("%s: description %q, time limit %dms; want %q, %dms", tt.Name, tt.Description, tt.TimeLimitMs,
				spec.Description, spec.TimeLimit.Milliseconds())
		}
		fieldNames := map[string]bool{}
		for _, f := range tt.Fields {
			if f.Type == "" || f.Description == "" {
				t.Errorf("%s: field %+v has no type or description", tt.Name, f)
			}
			fieldNames[f.Name] = true
		}
		for _, f := range spec.Fields {
			if !fieldNames[f.Name] {
				t.Errorf("%s: field %q of the type is not listed", tt.Name, f.Name)
			}
		}
		for _, common := range []string{"forceFailure", "timeLimitMs"} {
			if !fieldNames[common] {
				t.Errorf("%s: common field %q is not listed", tt.Name, common)
			}
		}
		if len(tt.Example) == 0 || tt.Example[0] != '{' {
			t.Errorf("%s: example %s is not a JSON object", tt.Name, tt.Example)
		} else if _, _, err := reg.Prepare(tt.Name, tt.Example); err != nil {
			t.Errorf("%s: example %s is not valid: %v", tt.Name, tt.Example, err)
		}
	}
	wantNames := builtinNames()
	slices.Sort(wantNames)
	if !slices.Equal(got, wantNames) {
		t.Errorf("listed types %v, want every built-in type sorted: %v", got, wantNames)
	}
}

// TestTaskTypesExamplesSubmit submits every listed example: what the API advertises, it accepts.
func TestTaskTypesExamplesSubmit(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	for _, spec := range catalog.Default().Specs() {
		body := fmt.Sprintf(`{"task":%q,"payload":%s,"directory":"examples/%s"}`, spec.Name, spec.Example, spec.Name)
		rec := env.serve(newSubmit(body, "application/json"))
		if rec.Code != http.StatusAccepted {
			t.Errorf("example of %s: status %d, want 202; body %s", spec.Name, rec.Code, rec.Body)
		}
	}
	if n := len(env.backend.submitCalls()); n != len(builtinNames()) {
		t.Errorf("backend got %d submits, want %d", n, len(builtinNames()))
	}
}

func TestErrorTable(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, e := range errorTable {
		if seen[e.code] {
			t.Errorf("code %q is in the table twice", e.code)
		}
		seen[e.code] = true
		if e.status < 400 || e.status > 599 || e.code == "" || e.message == "" {
			t.Errorf("entry %+v: want a 4xx/5xx status, a code and a message", e)
		}
		// Wrapped, the error still classifies as its own entry.
		status, code, _ := classify(fmt.Errorf("context: %w", e.err))
		if status != e.status || code != e.code {
			t.Errorf("wrapped %v classifies as %d %s, want %d %s", e.err, status, code, e.status, e.code)
		}
	}
	if status, code, _ := classify(errors.New("anything else")); status != 500 || code != "internal" {
		t.Errorf("unknown error classifies as %d %s, want 500 internal", status, code)
	}
}

func TestAPIConfigWithDefaults(t *testing.T) {
	t.Parallel()
	got := (*APIConfig)(nil).WithDefaults()
	if got.MaxBodyBytes != 16<<20 || got.BodyBudget != 32<<20 || got.HeartbeatInterval != 15*time.Second || got.MaxAttempts != 5 {
		t.Errorf("defaults = %+v, want 16 MiB, 32 MiB, 15s, 5", got)
	}
	in := &APIConfig{MaxBodyBytes: 10, BodyBudget: 20, HeartbeatInterval: time.Millisecond, MaxAttempts: 2}
	got = in.WithDefaults()
	if *got != *in || got == in {
		t.Errorf("WithDefaults(%+v) = %+v (same pointer: %v), want an equal copy", in, got, got == in)
	}
	for _, bad := range []*APIConfig{{MaxBodyBytes: -1}, {HeartbeatInterval: -1}, {MaxAttempts: -1}, {MaxBodyBytes: 100, BodyBudget: 99}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("mustValidate(%+v) did not panic", bad)
				}
			}()
			bad.WithDefaults().mustValidate()
		}()
	}
}

// The gateway holds at most BodyBudget bytes of submission bodies at once: a submission
// that finds no room waits for it, and is answered 503 with Retry-After when none comes
// within bodyWait; bytes given back let the next one in. A body's share is its
// Content-Length, or the most a body may be when it sends none.
func TestSubmissionBodyBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		body := `{"task":"sleep","payload":{"ms":10},"directory":"d"}`
		n := int64(len(body))
		e := newTestEnv(t, &APIConfig{MaxBodyBytes: 2 * n, BodyBudget: 2*n + n/2})
		gate := make(chan struct{})
		e.backend.submitGate = gate
		answers := make(chan *httptest.ResponseRecorder, 4)
		submit := func(chunked bool) {
			req := newSubmit(body, "application/json")
			if chunked {
				req.ContentLength = -1 // takes MaxBodyBytes
			}
			answers <- e.serve(req)
		}
		go submit(false) // takes n
		go submit(false) // takes n: 2n of 2.5n held
		synctest.Wait()
		go submit(false) // finds 0.5n: waits
		time.Sleep(bodyWait - time.Millisecond)
		synctest.Wait()
		if len(answers) != 0 {
			t.Fatalf("answered %d before its wait ended", (<-answers).Code)
		}
		time.Sleep(time.Millisecond)
		if r := <-answers; r.Code != http.StatusServiceUnavailable || r.Header().Get("Retry-After") == "" {
			t.Fatalf("a submission with no room: %d, Retry-After %q; want 503 with a Retry-After", r.Code, r.Header().Get("Retry-After"))
		}
		close(gate) // the two held submissions end and give their bytes back
		for range 2 {
			if r := <-answers; r.Code != http.StatusAccepted {
				t.Fatalf("a held submission: %d, want 202", r.Code)
			}
		}
		go submit(true) // no Content-Length: takes 2n, and there is room now
		if r := <-answers; r.Code != http.StatusAccepted {
			t.Fatalf("a submission without a Content-Length: %d, want 202", r.Code)
		}
		if got := len(e.backend.submitCalls()); got != 3 {
			t.Errorf("%d submissions reached the backend, want 3", got)
		}
	})
}
