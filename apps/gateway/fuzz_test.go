package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/taskgrid/taskgrid/internal/adapters/resultstore"
	"github.com/taskgrid/taskgrid/internal/domain/catalog"
)

// FuzzDecodeSubmit feeds arbitrary bodies, content types and idempotency keys to the
// submit decoder. It must never panic; a refusal is always a 4xx *RequestError with a
// message; an acceptance is always a known type, a valid directory and a compact JSON
// payload the catalog prepares.
//
//	go test -run '^$' -fuzz FuzzDecodeSubmit -fuzztime 30s ./apps/gateway
func FuzzDecodeSubmit(f *testing.F) {
	reg := catalog.Default()
	for _, spec := range reg.Specs() {
		body, _ := json.Marshal(map[string]any{"task": spec.Name, "payload": spec.Example, "directory": "out/" + spec.Name})
		f.Add(body, "application/json", "")
	}
	for _, seed := range []string{
		``, `{}`, `[]`, `null`, `{"task":"primes"}`, `{"task":1,"payload":{},"directory":"x"}`,
		`{"task":"primes","payload":{"limit":10},"directory":"../etc"}`,
		`{"task":"primes","payload":{"limit":10},"directory":"a"}{"x":1}`,
		`{"task":"sleep","payload":{"ms":-1},"directory":"a","extra":true}`,
		`{"task":"hash","payload":"not an object","directory":"/abs"}`,
	} {
		f.Add([]byte(seed), "application/json; charset=utf-8", "key-1")
	}
	f.Add([]byte(`{"task":"noop","payload":{},"directory":"d"}`), "text/plain", strings.Repeat("k", MaxIdempotencyKeyLen+1))

	f.Fuzz(func(t *testing.T, body []byte, contentType, key string) {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/tasks", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		if key != "" {
			r.Header.Set("Idempotency-Key", key)
		}
		req, err := decodeSubmit(r, 1<<16, reg)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("refusal is %T %v, want a *RequestError", err, err)
			}
			if re.Status < 400 || re.Status > 499 || re.Code == "" || re.Message == "" {
				t.Fatalf("refusal %+v: want a 4xx with a code and a message", re)
			}
			return
		}
		if _, err := reg.Spec(req.Task); err != nil {
			t.Fatalf("accepted unknown task type %q", req.Task)
		}
		if err := resultstore.ValidateDirectory(req.Directory); err != nil {
			t.Fatalf("accepted directory %q: %v", req.Directory, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, req.Payload); err != nil || !bytes.Equal(compact.Bytes(), req.Payload) || req.Payload[0] != '{' {
			t.Fatalf("accepted payload %q is not a compact JSON object (%v)", req.Payload, err)
		}
		if _, _, err := reg.Prepare(req.Task, req.Payload); err != nil {
			t.Fatalf("accepted payload %s that the catalog refuses: %v", req.Payload, err)
		}
	})
}
