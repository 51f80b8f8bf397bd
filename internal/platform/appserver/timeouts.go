package appserver

import (
	"net/http"
	"time"
)

// Timeouts are an http.Server's bounds on slow and idle clients, so that a client that
// sends its request a byte at a time (slowloris), never reads its response, or keeps an
// unused connection open cannot hold a goroutine, a file descriptor and buffers forever.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers (http.Server.ReadHeaderTimeout).
	ReadHeader time.Duration
	// Read bounds reading a whole request, headers and body (ReadTimeout).
	Read time.Duration
	// Write bounds the time from the end of the request's headers to the end of the
	// response (WriteTimeout): reading the body, the handler, writing the response. A
	// handler that streams (SSE) sets its own deadlines through http.ResponseController.
	Write time.Duration
	// Idle bounds how long a keep-alive connection waits for its next request (IdleTimeout).
	Idle time.Duration
}

// PublicTimeouts are the public listener's: people, their scripts and Prometheus.
//
//   - ReadHeader 5 s: a request's headers fit in one packet or a few.
//   - Read 1 min: the largest body is a submission (the API's MaxBodyBytes, 16 MiB), which
//     this admits down to about 280 KB/s.
//   - Write 2 min: responses are JSON (a task, a result's JSON, read whole before it is
//     sent: 16 MiB of it reach a client at 140 KB/s), the web page or a Prometheus scrape;
//     pprof's CPU profile (PROFILING=true) may last up to Write, less a second
//     (net/http/pprof refuses a longer one). It must stay above Read plus the slowest
//     handler (a submission waits up to 2 s for the queue). The
//     gateway's event streams (GET /api/v1/tasks/{id}/events) lift it and bound each write
//     instead: a stream lasts as long as its task.
//   - Idle 2 min: above Go's http.Transport (90 s) so that a Go client closes an idle
//     connection before the server does (no request races a close), and above every
//     scrape interval so Prometheus keeps its connections.
var PublicTimeouts = Timeouts{ReadHeader: 5 * time.Second, Read: time.Minute, Write: 2 * time.Minute, Idle: 2 * time.Minute}

// ChannelTimeouts are the app channel's: only the Dapr sidecar calls it, over loopback,
// but the bodies it relays may come from another node at that node's pace.
//
//   - Read 2 min: the storekeeper's POST /results carries batches of results and their
//     files (up to 96 MiB), streamed from the worker's sidecar; the worker gives up on a
//     hand-off after 1 min (apps/worker deliverTimeout), so the server's bound never comes
//     first.
//   - Write 3 min: above every caller's own bound, so the server never cuts a reply its
//     caller still waits for: a result batch (the worker's 1 min; the storekeeper's store
//     is bounded by 1 min too), actor calls (a worker slot's push 2 s, a queue sync the
//     lease TTL, a reminder or a call that waits for an actor to move: daprd's drain, 30 s),
//     a bulk delivery of events (handled in memory).
//   - Idle 2 min: daprd's client to the app is a clone of Go's default transport, which
//     closes idle connections after 90 s: it closes them first, so none of its requests
//     races the server's close.
var ChannelTimeouts = Timeouts{ReadHeader: 5 * time.Second, Read: 2 * time.Minute, Write: 3 * time.Minute, Idle: 2 * time.Minute}

// NewHTTPServer returns a server for handler with the timeouts t.
func NewHTTPServer(handler http.Handler, t Timeouts) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
	}
}
