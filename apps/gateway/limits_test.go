package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"

	"github.com/taskgrid/taskgrid/internal/domain/task"

	"github.com/taskgrid/taskgrid/internal/platform/appserver"
	"github.com/taskgrid/taskgrid/internal/platform/env"
	"github.com/taskgrid/taskgrid/internal/platform/runner"
)

func TestLoadStreamLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    StreamLimits
		wantErr bool
	}{
		{"defaults", nil, StreamLimits{Max: MaxStreamsDefault, PerClient: MaxStreamsPerClientDefault}, false},
		{"set", map[string]string{"SSE_MAX_STREAMS": "50", "SSE_MAX_STREAMS_PER_CLIENT": "5"}, StreamLimits{Max: 50, PerClient: 5}, false},
		{"no caps", map[string]string{"SSE_MAX_STREAMS": "0", "SSE_MAX_STREAMS_PER_CLIENT": "0"}, StreamLimits{}, false},
		{"negative", map[string]string{"SSE_MAX_STREAMS": "-1"}, StreamLimits{}, true},
		{"not a number", map[string]string{"SSE_MAX_STREAMS_PER_CLIENT": "many"}, StreamLimits{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.New(func(k string) string { return tt.env[k] })
			got := LoadStreamLimits(r)
			if err := r.Err(); (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error: %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Fatalf("LoadStreamLimits = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestStreamLimiter runs sequences of acquisitions (client name) and releases ("-" and
// the index of the acquisition to release) against limits.
func TestStreamLimiter(t *testing.T) {
	t.Parallel()
	const (
		ok   = 0
		r429 = http.StatusTooManyRequests
		r503 = http.StatusServiceUnavailable
	)
	type step struct {
		client  string
		release int // with client "-": release the stream of step release
		want    int // ok or the refusal's status
	}
	tests := []struct {
		name         string
		limits       StreamLimits
		steps        []step
		wantOpen     int
		want429      float64
		want503      float64
		wantByClient map[string]int
	}{
		{"no caps", StreamLimits{}, []step{{client: "a"}, {client: "a"}, {client: "a"}, {client: "b"}}, 4, 0, 0, map[string]int{"a": 3, "b": 1}},
		{"client cap", StreamLimits{PerClient: 2}, []step{
			{client: "a"}, {client: "a"}, {client: "a", want: r429}, {client: "b"}, {client: "b"}, {client: "b", want: r429},
		}, 4, 2, 0, map[string]int{"a": 2, "b": 2}},
		{"total cap", StreamLimits{Max: 3}, []step{
			{client: "a"}, {client: "b"}, {client: "c"}, {client: "d", want: r503}, {client: "a", want: r503},
		}, 3, 0, 2, map[string]int{"a": 1, "b": 1, "c": 1}},
		{"client cap checked first", StreamLimits{Max: 3, PerClient: 2}, []step{
			{client: "a"}, {client: "a"}, {client: "b"}, {client: "a", want: r429}, {client: "b", want: r503}, {client: "c", want: r503},
		}, 3, 1, 2, map[string]int{"a": 2, "b": 1}},
		{"release frees a stream", StreamLimits{Max: 2, PerClient: 1}, []step{
			{client: "a"}, {client: "a", want: r429}, {client: "-", release: 0}, {client: "a"}, {client: "b"}, {client: "c", want: r503},
			{client: "-", release: 4}, {client: "c"},
		}, 2, 1, 1, map[string]int{"a": 1, "c": 1}},
		{"release twice counts once", StreamLimits{PerClient: 2}, []step{
			{client: "a"}, {client: "a"}, {client: "-", release: 0}, {client: "-", release: 0}, {client: "a"}, {client: "a", want: r429},
		}, 2, 1, 0, map[string]int{"a": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := NewStreamLimiter(tt.limits)
			releases := make([]func(), len(tt.steps))
			for i, s := range tt.steps {
				if s.client == "-" {
					releases[s.release]()
					continue
				}
				release, err := l.Acquire(s.client)
				if s.want == ok {
					if err != nil {
						t.Fatalf("step %d (%s): %v, want a stream", i, s.client, err)
					}
					releases[i] = release
					continue
				}
				var re *RequestError
				if !errors.As(err, &re) || re.Status != s.want || re.Code == "" || re.Message == "" || release != nil {
					t.Fatalf("step %d (%s): %v, want a %d *RequestError with a code and a message", i, s.client, err, s.want)
				}
			}
			for client, want := range tt.wantByClient {
				if total, n := l.Open(client); total != tt.wantOpen || n != want {
					t.Errorf("open %d, %s %d; want %d, %d", total, client, n, tt.wantOpen, want)
				}
			}
			checkRefused(t, l, tt.want429, tt.want503)
		})
	}
}

// checkRefused checks the limiter's refusal counters.
func checkRefused(t *testing.T, l *StreamLimiter, client, total float64) {
	t.Helper()
	for reason, want := range map[string]float64{refusedClient: client, refusedTotal: total} {
		var m dto.Metric
		if err := l.refused.WithLabelValues(reason).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != want {
			t.Errorf("refused{reason=%s} = %v, want %v", reason, got, want)
		}
	}
}

func TestStreamClient(t *testing.T) {
	t.Parallel()
	tests := []struct{ remote, want string }{
		{"192.0.2.7:5000", "192.0.2.7"},
		{"192.0.2.7:5001", "192.0.2.7"}, // another connection of the same host
		{"[::ffff:192.0.2.7]:80", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::/64"}, // the same /64
		{"[2001:db8:1:3::1]:443", "2001:db8:1:3::/64"},
		{"[fe80::1%eth0]:443", "fe80::/64"},
		{"[::1]:8080", "::/64"},
		{"127.0.0.1:1", "127.0.0.1"},
		{"192.0.2.7", "192.0.2.7"}, // no port
		{"not an address", "not an address"},
		{"", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.remote
		if got := streamClient(r); got != tt.want {
			t.Errorf("streamClient(%q) = %q, want %q", tt.remote, got, tt.want)
		}
		// With API keys, the key is the client, wherever it connects from.
		r = r.WithContext(context.WithValue(r.Context(), ownerKey{}, "alice"))
		if got := streamClient(r); got != "key alice" {
			t.Errorf("streamClient(%q) with key alice = %q, want \"key alice\"", tt.remote, got)
		}
	}
}

// capServer serves env's API over HTTP; a request's X-Test-Remote header stands for its
// remote address, so that one test has several clients.
func capServer(t *testing.T, env *testEnv) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("X-Test-Remote"); a != "" {
			r.RemoteAddr = a
		}
		env.handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(env.hub.Close)
	return srv
}

// refusedStream opens a stream that must be refused with status and code.
func refusedStream(t *testing.T, srv *httptest.Server, id uuid.UUID, remote string, status int, code string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/tasks/"+id.String()+"/events", nil)
	req.Header.Set("X-Test-Remote", remote)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	e := decodeErrorBody(t, resp.StatusCode, resp.Header, body, status, code)
	if ra := resp.Header.Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After = %q, want 5", ra)
	}
	var details struct{ Limit int }
	if err := json.Unmarshal(e.Error.Details, &details); err != nil || details.Limit == 0 {
		t.Errorf("details %s: want the limit", e.Error.Details)
	}
}

// TestEventsStreamCaps: over HTTP, a client past its cap gets 429, any client past the
// gateway's 503, both JSON errors with a Retry-After; refused streams hold nothing, and a
// stream that ends (or a request for an unknown task) frees its place.
func TestEventsStreamCaps(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	env.hub.Streams().SetLimits(StreamLimits{Max: 3, PerClient: 2})
	env.promReg.MustRegister(env.hub.Streams())
	srv := capServer(t, env)
	rec := pendingRecord()
	env.backend.put(rec)
	const a, b = "192.0.2.1:1000", "192.0.2.2:1000"

	a1 := openEvents(t, srv, rec.ID, "X-Test-Remote", a)
	a1.nextEvent(t)
	a2 := openEvents(t, srv, rec.ID, "X-Test-Remote", a)
	a2.nextEvent(t)
	refusedStream(t, srv, rec.ID, a, http.StatusTooManyRequests, "too_many_streams")
	b1 := openEvents(t, srv, rec.ID, "X-Test-Remote", b)
	b1.nextEvent(t)
	refusedStream(t, srv, rec.ID, b, http.StatusServiceUnavailable, "too_many_streams_in_all")
	refusedStream(t, srv, rec.ID, a, http.StatusTooManyRequests, "too_many_streams")
	if n := env.hub.Clients(); n != 3 {
		t.Errorf("hub has %d subscriptions, want 3 (refused streams subscribe to nothing)", n)
	}
	if n, _ := env.metric(t, "taskgrid_sse_clients"); n != 3 {
		t.Errorf("taskgrid_sse_clients = %v, want 3", n)
	}
	for reason, want := range map[string]float64{"client": 2, "total": 1} {
		if n, ok := env.metric(t, "taskgrid_sse_streams_refused_total", "reason", reason); !ok || n != want {
			t.Errorf("taskgrid_sse_streams_refused_total{reason=%s} = %v (%v), want %v", reason, n, ok, want)
		}
	}

	// A stream that ends frees its place.
	a1.close()
	waitFor(t, "a's first stream to be released", func() bool { total, n := env.hub.Streams().Open("192.0.2.1"); return total == 2 && n == 1 })
	a3 := openEvents(t, srv, rec.ID, "X-Test-Remote", a)
	a3.nextEvent(t)

	// An unknown task is answered 404 and frees its place at once.
	env.hub.Streams().SetLimits(StreamLimits{Max: 4, PerClient: 3})
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/tasks/"+uuid.NewString()+"/events", nil)
	req.Header.Set("X-Test-Remote", b)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown task: %d, want 404", resp.StatusCode)
	}
	if total, n := env.hub.Streams().Open("192.0.2.2"); total != 3 || n != 1 {
		t.Errorf("after a 404: open %d, b %d; want 3, 1", total, n)
	}

	// A terminal event ends every stream, and frees every place.
	env.hub.Publish(Update{TaskID: rec.ID, Kind: UpdateCompleted, Patch: viewPatch{Result: &task.Location{Path: "x"}}})
	for _, c := range []*sseClient{a2, b1, a3} {
		if f := c.nextEvent(t); f.Event != "completed" {
			t.Errorf("got %s, want completed", f)
		}
		c.expectEnd(t)
	}
	waitFor(t, "every stream to be released", func() bool { total, _ := env.hub.Streams().Open(""); return total == 0 })
}

// TestEventsOutliveServerTimeouts: on a server with the timeouts the apps use (shortened
// for the test), a stream outlives ReadTimeout and WriteTimeout several times over, with
// its heartbeats and its events, and ends with its terminal event.
func TestEventsOutliveServerTimeouts(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, &APIConfig{HeartbeatInterval: 100 * time.Millisecond})
	to := appserver.Timeouts{ReadHeader: 200 * time.Millisecond, Read: 200 * time.Millisecond, Write: 200 * time.Millisecond, Idle: 200 * time.Millisecond}
	r := chi.NewRouter()
	env.api.Mount(r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.ServeHTTP(ctx, appserver.NewHTTPServer(r, to), ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	t.Cleanup(env.hub.Close) // before the server's shutdown, which waits for the streams
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)

	rec := pendingRecord()
	env.backend.put(rec)
	c := openStream(t, client, "http://"+ln.Addr().String(), rec.ID)
	if f := c.nextEvent(t); f.Event != UpdateStatus {
		t.Fatalf("first event %s, want status", f)
	}
	// Heartbeats for five times the timeouts: the stream stays open.
	beats := 0
	for end := time.Now().Add(5 * to.Write); time.Now().Before(end); {
		f, ok := c.next(t)
		if !ok {
			t.Fatalf("stream ended after %d heartbeats, within the server's timeouts' reach", beats)
		}
		if f.Comment == "ping" {
			beats++
		}
	}
	env.hub.Publish(progressUpdate(rec.ID, 0.5))
	if f := c.nextEvent(t); f.Event != UpdateProgress {
		t.Fatalf("got %s, want progress", f)
	}
	env.hub.Publish(Update{TaskID: rec.ID, Kind: UpdateCompleted, Patch: viewPatch{Result: &task.Location{Path: "x"}}})
	if f := c.nextEvent(t); f.Event != UpdateCompleted {
		t.Fatalf("got %s, want completed", f)
	}
	c.expectEnd(t)
	if beats == 0 {
		t.Errorf("no heartbeat in %s", 5*to.Write)
	}
}

// openStream opens the event stream of id with client.
func openStream(t *testing.T, client *http.Client, base string, id uuid.UUID) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/tasks/"+id.String()+"/events", nil)
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &sseClient{resp: resp, frames: make(chan sseFrame, 1024), cancel: cancel}
	t.Cleanup(c.close)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %d", resp.StatusCode)
	}
	go c.read()
	return c
}

// TestEventsStreamCapPerKey: with API keys, the client of the cap is the key, whatever
// address it connects from: two keys on one address each have their own streams, and
// one key's streams count together.
func TestEventsStreamCapPerKey(t *testing.T) {
	t.Parallel()
	k, err := LoadKeys(writeKeys(t, "alice:"+aliceKey+"\nbob:"+bobKey+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := newTestEnv(t, &APIConfig{Keys: k})
	env.hub.Streams().SetLimits(StreamLimits{PerClient: 1})
	srv := capServer(t, env)
	alices, bobs := pendingRecord(), pendingRecord()
	alices.Owner, bobs.Owner = "alice", "bob"
	env.backend.put(alices)
	env.backend.put(bobs)

	a := openEvents(t, srv, alices.ID, "Authorization", "Bearer "+aliceKey, "X-Test-Remote", "192.0.2.1:1")
	a.nextEvent(t)
	b := openEvents(t, srv, bobs.ID, "Authorization", "Bearer "+bobKey, "X-Test-Remote", "192.0.2.1:2")
	b.nextEvent(t)
	// Alice again, from another address: her key has its stream.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/tasks/"+alices.ID.String()+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+aliceKey)
	req.Header.Set("X-Test-Remote", "198.51.100.9:3")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	decodeErrorBody(t, resp.StatusCode, resp.Header, body, http.StatusTooManyRequests, "too_many_streams")
	if _, n := env.hub.Streams().Open("key alice"); n != 1 {
		t.Errorf("alice has %d streams, want 1", n)
	}
}
