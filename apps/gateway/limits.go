package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/platform/env"
)

// StreamLimits caps the event streams (GET /api/v1/tasks/{id}/events) a gateway holds
// open. Each costs a connection (a file descriptor), two goroutines and their buffers,
// for as long as its task runs, so without a cap one client could exhaust them all.
// Zero means no cap.
type StreamLimits struct {
	// Max is the most streams open at once on this gateway (SSE_MAX_STREAMS); one more
	// is answered 503 too_many_streams_in_all.
	Max int
	// PerClient is the most one client may have open at once
	// (SSE_MAX_STREAMS_PER_CLIENT); one more is answered 429 too_many_streams. A client
	// is its API key (by name) when the gateway has keys, else its remote IP address (an
	// IPv6 one by its /64, what one host is usually given). Without keys behind a proxy,
	// every client has the proxy's address: raise it, or set 0, there.
	PerClient int
}

// Defaults of StreamLimits: a browser holds a few streams, a script that watches a batch
// of tasks a few hundred.
const (
	MaxStreamsDefault          = 10_000
	MaxStreamsPerClientDefault = 1_000
)

// DefaultStreamLimits are the limits a gateway has unless configured otherwise.
func DefaultStreamLimits() StreamLimits {
	return StreamLimits{Max: MaxStreamsDefault, PerClient: MaxStreamsPerClientDefault}
}

// LoadStreamLimits reads SSE_MAX_STREAMS and SSE_MAX_STREAMS_PER_CLIENT (0: no cap).
func LoadStreamLimits(r *env.Reader) StreamLimits {
	return StreamLimits{
		Max:       r.Int("SSE_MAX_STREAMS", MaxStreamsDefault, 0, 10_000_000),
		PerClient: r.Int("SSE_MAX_STREAMS_PER_CLIENT", MaxStreamsPerClientDefault, 0, 10_000_000),
	}
}

// streamRetryAfter is the Retry-After (seconds) of a refused stream: a stream is held
// for as long as its task runs, so an immediate retry would be refused again.
const streamRetryAfter = 5

// Reasons a stream is refused, matched with errors.Is.
var (
	errTooManyStreams        = errors.New("too many event streams for this client")
	errTooManyStreamsInTotal = errors.New("too many event streams on this gateway")
)

// Labels of taskgrid_sse_streams_refused_total.
const (
	refusedClient = "client" // the client's cap (429)
	refusedTotal  = "total"  // the gateway's cap (503)
)

// StreamLimiter counts the open event streams, in all and by client, and refuses those
// beyond its StreamLimits. It is a prometheus.Collector of the refusals
// (taskgrid_sse_streams_refused_total, by reason: client or total). Safe for concurrent use.
type StreamLimiter struct {
	refused *prometheus.CounterVec

	mu       sync.Mutex
	limits   StreamLimits
	open     int
	byClient map[string]int
}

// NewStreamLimiter returns a limiter with no stream open.
func NewStreamLimiter(l StreamLimits) *StreamLimiter {
	s := &StreamLimiter{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_sse_streams_refused_total",
			Help: "Server-Sent Events streams refused: by reason, client (the client's cap, SSE_MAX_STREAMS_PER_CLIENT, 429) or total (the gateway's cap, SSE_MAX_STREAMS, 503).",
		}, []string{"reason"}),
		limits:   l,
		byClient: map[string]int{},
	}
	s.refused.WithLabelValues(refusedClient)
	s.refused.WithLabelValues(refusedTotal)
	return s
}

// SetLimits changes the limits; streams open beyond new caps stay open.
func (s *StreamLimiter) SetLimits(l StreamLimits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = l
}

// Limits returns the current limits.
func (s *StreamLimiter) Limits() StreamLimits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limits
}

// Acquire takes a stream for client, or refuses it with a *RequestError (429 for the
// client's cap, checked first, 503 for the gateway's). release gives the stream back;
// calling it more than once gives it back once.
func (s *StreamLimiter) Acquire(client string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.byClient[client]
	switch {
	case s.limits.PerClient > 0 && n >= s.limits.PerClient:
		s.refused.WithLabelValues(refusedClient).Inc()
		return nil, &RequestError{
			Status: http.StatusTooManyRequests, Code: "too_many_streams", Err: errTooManyStreams,
			Message: fmt.Sprintf("this client has %d event streams open, the most this gateway allows one client; close one (a stream ends after its task's last event) and retry, or poll GET %s/{id}",
				n, routeTasks),
			Details: map[string]int{"limit": s.limits.PerClient},
		}
	case s.limits.Max > 0 && s.open >= s.limits.Max:
		s.refused.WithLabelValues(refusedTotal).Inc()
		return nil, &RequestError{
			Status: http.StatusServiceUnavailable, Code: "too_many_streams_in_all", Err: errTooManyStreamsInTotal,
			Message: fmt.Sprintf("this gateway has the most event streams it serves open (%d); retry later, or poll GET %s/{id}", s.open, routeTasks),
			Details: map[string]int{"limit": s.limits.Max},
		}
	}
	s.open++
	s.byClient[client] = n + 1
	var once sync.Once
	return func() { once.Do(func() { s.release(client) }) }, nil
}

func (s *StreamLimiter) release(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if s.byClient[client]--; s.byClient[client] <= 0 {
		delete(s.byClient, client)
	}
}

// Open returns how many streams are open, in all and for client.
func (s *StreamLimiter) Open(client string) (total, ofClient int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.byClient[client]
}

// Describe implements prometheus.Collector.
func (s *StreamLimiter) Describe(ch chan<- *prometheus.Desc) { s.refused.Describe(ch) }

// Collect implements prometheus.Collector.
func (s *StreamLimiter) Collect(ch chan<- prometheus.Metric) { s.refused.Collect(ch) }

// writeStreamRefusal answers a stream refused by Acquire: the API's JSON error, with a
// Retry-After. It is not logged above debug: the metric counts refusals, and a client
// that retries in a loop would flood the log.
func (a *API) writeStreamRefusal(w http.ResponseWriter, r *http.Request, err error) {
	var re *RequestError
	if !errors.As(err, &re) {
		a.writeError(w, r, err)
		return
	}
	a.logger.DebugContext(r.Context(), "event stream refused", "path", r.URL.Path, "client", streamClient(r), "code", re.Code)
	w.Header().Set("Retry-After", strconv.Itoa(streamRetryAfter))
	writeJSON(w, re.Status, errorBody{Error: errorPayload{Code: re.Code, Message: re.Message, Details: re.Details}})
}

// streamClient names the client of r for its stream cap: the name of its API key when
// the gateway has keys (Keys.Require checked it), else its remote IP address, an IPv6
// address by its /64 (a host is given a /64 and may use any address in it).
func streamClient(r *http.Request) string {
	if owner := ownerOf(r.Context()); owner != "" {
		return "key " + owner // no IP address has a space
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64) // cannot fail: 64 bits of an IPv6 address
		return p.String()
	}
	return ip.String()
}
