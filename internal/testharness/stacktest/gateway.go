package stacktest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// TaskView is the gateway's JSON view of a task (the fields tests read).
type TaskView struct {
	ID       string  `json:"id"`
	Task     string  `json:"task"`
	Status   string  `json:"status"`
	Priority string  `json:"priority"`
	Attempts int     `json:"attempts"`
	Progress float64 `json:"progress"`
	Error    string  `json:"error"`
	Result   *struct {
		Directory string   `json:"directory"`
		Path      string   `json:"path"`
		Files     []string `json:"files"`
	} `json:"result"`
	Worker       string     `json:"worker"`
	QueuedAt     *time.Time `json:"queued_at"`
	DispatchedAt *time.Time `json:"dispatched_at"`
	StartedAt    *time.Time `json:"started_at"`
	FinishedAt   *time.Time `json:"finished_at"`
}

// Gateway is a client of one gateway instance's HTTP API.
type Gateway struct {
	Base string
	// Header is sent with every request (a sidecar's API token, say).
	Header map[string]string
}

// Gateway returns a client of the first gateway instance.
func (s *Stack) Gateway() Gateway { return Gateway{Base: s.App("gateway").BaseURL()} }

// Response is a raw API response.
type Response struct {
	Code   int
	Header http.Header
	Body   []byte
}

// Do sends one request with a JSON body (nil for none) and extra headers.
func (g Gateway) Do(ctx context.Context, method, path string, body []byte, header map[string]string) (Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.Base+path, r)
	if err != nil {
		return Response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range g.Header {
		req.Header.Set(k, v)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return Response{Code: resp.StatusCode, Header: resp.Header, Body: data}, err
}

// Submit posts a task; it fails unless the gateway accepts it (202).
func (g Gateway) Submit(ctx context.Context, typ string, payload any, dir string) (TaskView, error) {
	body, _ := json.Marshal(map[string]any{"task": typ, "payload": payload, "directory": dir})
	resp, err := g.Do(ctx, http.MethodPost, "/api/v1/tasks", body, nil)
	if err != nil {
		return TaskView{}, err
	}
	if resp.Code != http.StatusAccepted {
		return TaskView{}, fmt.Errorf("submit %s: %d %s", typ, resp.Code, resp.Body)
	}
	var v TaskView
	return v, json.Unmarshal(resp.Body, &v)
}

// SubmitRetrying submits a task as a client should: a 503 is retried after its
// Retry-After with the same Idempotency-Key, for up to two minutes, so a task refused
// while the queue could not be reached (a gateway joining, an outage) is submitted once.
// It fails when a 503 took more than 3 s to come or had no Retry-After, and returns the
// task and how many 503s it got.
func (g Gateway) SubmitRetrying(ctx context.Context, typ string, payload any, dir string) (v TaskView, refused int, err error) {
	return g.SubmitUntilAccepted(ctx, typ, payload, dir, uuid.NewString())
}

// SubmitUntilAccepted is SubmitRetrying with the given Idempotency-Key; with none (""), a
// task refused with a 503 may still run (the gateway queues it in the background) besides
// the one a retry submits.
func (g Gateway) SubmitUntilAccepted(ctx context.Context, typ string, payload any, dir, key string) (v TaskView, refused int, err error) {
	body, _ := json.Marshal(map[string]any{"task": typ, "payload": payload, "directory": dir})
	var header map[string]string
	if key != "" {
		header = map[string]string{"Idempotency-Key": key}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		began := time.Now()
		resp, err := g.Do(ctx, http.MethodPost, "/api/v1/tasks", body, header)
		switch {
		case err != nil:
			return v, refused, err
		case resp.Code == http.StatusAccepted || resp.Code == http.StatusOK:
			return v, refused, json.Unmarshal(resp.Body, &v)
		case resp.Code != http.StatusServiceUnavailable:
			return v, refused, fmt.Errorf("submit %s: %d %s", typ, resp.Code, resp.Body)
		}
		refused++
		if took := time.Since(began); took > 3*time.Second {
			return v, refused, fmt.Errorf("a 503 took %s: want it within about a second", took.Round(time.Millisecond))
		}
		wait, perr := strconv.Atoi(resp.Header.Get("Retry-After"))
		if perr != nil || wait < 1 {
			return v, refused, fmt.Errorf("503 without a Retry-After in seconds: %q", resp.Header.Get("Retry-After"))
		}
		if time.Now().After(deadline) {
			return v, refused, errors.New("still 503 after two minutes")
		}
		select {
		case <-ctx.Done():
			return v, refused, ctx.Err()
		case <-time.After(time.Duration(wait) * time.Second):
		}
	}
}

// Get reads a task.
func (g Gateway) Get(ctx context.Context, id string) (TaskView, error) {
	resp, err := g.Do(ctx, http.MethodGet, "/api/v1/tasks/"+id, nil, nil)
	if err != nil {
		return TaskView{}, err
	}
	if resp.Code != http.StatusOK {
		return TaskView{}, fmt.Errorf("get %s: %d %s", id, resp.Code, resp.Body)
	}
	var v TaskView
	return v, json.Unmarshal(resp.Body, &v)
}

// WaitStatus polls a task until its status is one of want or ctx ends.
func (g Gateway) WaitStatus(ctx context.Context, id string, want ...string) (TaskView, error) {
	for {
		v, err := g.Get(ctx, id)
		if err == nil {
			for _, w := range want {
				if v.Status == w {
					return v, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("task %s: status %q, want %v: %w (last error %v)", id, v.Status, want, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SSEEvent is one Server-Sent Event.
type SSEEvent struct {
	ID, Event string
	Data      []byte
	At        time.Time
}

// Events opens the task's SSE stream and sends each event on the returned channel
// until the stream ends (the channel is then closed). connected is closed once the
// response headers arrived.
func (g Gateway) Events(ctx context.Context, id string) (events <-chan SSEEvent, connected <-chan error) {
	out := make(chan SSEEvent, 64)
	conn := make(chan error, 1)
	go func() {
		defer close(out)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.Base+"/api/v1/tasks/"+id+"/events", nil)
		req.Header.Set("Accept", "text/event-stream")
		for k, v := range g.Header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			conn <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			conn <- fmt.Errorf("events %s: %d %s", id, resp.StatusCode, b)
			return
		}
		conn <- nil
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev SSEEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" || ev.Data != nil {
					ev.At = time.Now()
					out <- ev
				}
				ev = SSEEvent{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "event:"):
				ev.Event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "id:"):
				ev.ID = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
			case strings.HasPrefix(line, "data:"):
				ev.Data = append(ev.Data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")...)
			}
		}
	}()
	return out, conn
}
