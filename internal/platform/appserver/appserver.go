// Package appserver is the HTTP skeleton every app shares: configuration common to all
// apps, two listeners with a chi router each, request metrics, and a graceful run loop.
//
// The public listener (PUBLIC_HOST:PUBLIC_PORT) serves what people and Prometheus call:
// the gateway's API and web page, /healthz, /readyz (dependencies) and /metrics. The app
// channel (APP_HOST:APP_PORT, daprd's --app-port, on loopback) serves what the sidecar
// calls: actors, invocation, subscriptions, and /healthz for its probe. With
// APP_API_TOKEN set, every channel route but /healthz answers 401 to a request without
// the sidecar's dapr-api-token header. Neither listener routes the other's paths.
package appserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/taskgrid/taskgrid/internal/adapters/sidecar"
	"github.com/taskgrid/taskgrid/internal/platform/env"
	"github.com/taskgrid/taskgrid/internal/platform/runner"
	"github.com/taskgrid/taskgrid/internal/platform/steps"
)

// Config is what every app reads from its environment. dapr run exports APP_ID,
// APP_PORT, DAPR_HTTP_PORT and DAPR_GRPC_PORT.
type Config struct {
	AppID string
	// Instance names this process among the instances of its app (NODE_ID, else the host
	// name); it must be stable across restarts, like a StatefulSet pod name.
	Instance string
	// Host and Port are the app channel's address (APP_HOST, APP_PORT): the sidecar's
	// --app-port, on loopback (the pod's, on Kubernetes).
	Host string
	Port int
	// PublicHost and PublicPort are the public listener's (PUBLIC_HOST, PUBLIC_PORT).
	PublicHost string
	PublicPort int
	// AppToken (APP_API_TOKEN) is what the sidecar sends in dapr-api-token on every call
	// to the app channel; unset, the channel takes calls without it (loopback only).
	AppToken env.Secret
	LogLevel string
	Sidecar  sidecar.Config
	// Profiling serves Go's pprof under /debug/pprof (PROFILING=true); off by default.
	Profiling bool
	// StepLog (STEP_LOG), when set, is the file the steps of tasks' ways are stamped in
	// (package steps, for make bench's -steps); off by default.
	StepLog string
}

// LoadConfig reads the common configuration; defaultID and defaultPort apply when
// APP_ID and PUBLIC_PORT are unset; the app channel's port defaults to defaultPort+10.
func LoadConfig(r *env.Reader, defaultID string, defaultPort int) Config {
	c := Config{
		AppID:      r.String("APP_ID", defaultID),
		Instance:   r.String("NODE_ID", hostname()),
		Host:       r.String("APP_HOST", "127.0.0.1"),
		Port:       r.Port("APP_PORT", defaultPort+10),
		PublicHost: r.String("PUBLIC_HOST", "127.0.0.1"),
		PublicPort: r.Port("PUBLIC_PORT", defaultPort),
		AppToken:   r.Secret("APP_API_TOKEN"),
		LogLevel:   r.String("LOG_LEVEL", "info"),
		Sidecar:    sidecar.LoadConfig(r),
		Profiling:  r.Bool("PROFILING", false),
		StepLog:    r.String(steps.Env, ""),
	}
	if c.Port == c.PublicPort && c.Host == c.PublicHost {
		r.Fail("PUBLIC_PORT", strconv.Itoa(c.PublicPort), "a port other than APP_PORT (the app channel)")
	}
	return c
}

// Addr is the app channel's address (the sidecar's --app-port).
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// PublicAddr is the public listener's address.
func (c Config) PublicAddr() string {
	return net.JoinHostPort(c.PublicHost, strconv.Itoa(c.PublicPort))
}

// CheckFunc reports whether one dependency is usable.
type CheckFunc func(ctx context.Context) error

// Server is an app's two HTTP listeners. Add routes to Router (public) and Channel (what
// the sidecar calls) before Run.
type Server struct {
	Router  chi.Router
	Channel chi.Router
	logger  *slog.Logger
	cfg     Config

	mu         sync.Mutex
	checks     map[string]CheckFunc
	onShutdown []func()
	unhealthy  atomic.Bool // /healthz answers 503 while set (SetLive)
}

// SetLive sets what /healthz, which daprd probes, answers: 200 when live (the default),
// 503 when not. daprd takes an app that stays unhealthy for its probe threshold out of
// service (no deliveries, its actor types unregistered) and puts it back once healthy.
func (s *Server) SetLive(live bool) { s.unhealthy.Store(!live) }

// OnShutdown registers f to run when the server starts shutting down: long-lived
// responses (SSE streams) must end then, or the shutdown waits for them.
func (s *Server) OnShutdown(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onShutdown = append(s.onShutdown, f)
}

// New builds the router with the operational endpoints and request metrics registered
// in reg.
func New(logger *slog.Logger, cfg Config, reg *prometheus.Registry) *Server {
	s := &Server{Router: chi.NewRouter(), Channel: chi.NewRouter(), logger: logger, cfg: cfg, checks: map[string]CheckFunc{}}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskgrid_http_requests_total",
		Help: "HTTP requests served, by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "taskgrid_http_request_duration_seconds",
		Help:    "Time to serve an HTTP request (until the handler returns), by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route", "method"})
	reg.MustRegister(requests, duration)

	measure := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			route := chi.RouteContext(r.Context()).RoutePattern()
			if route == "" {
				route = "unmatched"
			}
			requests.WithLabelValues(route, r.Method, strconv.Itoa(ww.Status())).Inc()
			duration.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
		})
	}
	health := func(w http.ResponseWriter, r *http.Request) {
		if s.unhealthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	s.Channel.Use(middleware.Recoverer, measure, RequireToken(cfg.AppToken, "/healthz"))
	s.Channel.Get("/healthz", health)
	s.Router.Use(middleware.Recoverer, measure)
	s.Router.Get("/healthz", health)
	s.Router.Get("/readyz", s.serveReady)
	s.Router.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if cfg.Profiling {
		s.Router.Mount("/debug", middleware.Profiler()) // Go's pprof, for measuring where CPU goes
	}
	return s
}

// AddCheck makes /readyz depend on check.
func (s *Server) AddCheck(name string, check CheckFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = check
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s.mu.Lock()
	checks := make(map[string]CheckFunc, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()

	status, code := map[string]string{}, http.StatusOK
	for name, check := range checks {
		if err := check(ctx); err != nil {
			status[name] = err.Error()
			code = http.StatusServiceUnavailable
			continue
		}
		status[name] = "ok"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"app_id": s.cfg.AppID, "checks": status})
}

// RequireToken answers 401 to every request but those for the open paths that lacks
// header dapr-api-token with token, compared in constant time. An empty token checks
// nothing (the channel is on loopback; the app logs that it runs without one).
func RequireToken(token env.Secret, open ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if token == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !token.Matches(r.Header.Get(TokenHeader)) && !slices.Contains(open, r.URL.Path) {
				http.Error(w, "missing or wrong "+TokenHeader+" header: the app channel answers only its Dapr sidecar", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TokenHeader carries the app token (sidecar → app), as it does the Dapr API token.
const TokenHeader = sidecar.TokenHeader

// Run listens on both addresses and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	public, err := runner.Listen(s.cfg.PublicAddr(), s.cfg.AppID+" public port (PUBLIC_PORT)")
	if err != nil {
		return err
	}
	channel, err := runner.Listen(s.cfg.Addr(), s.cfg.AppID+" app channel port (APP_PORT)")
	if err != nil {
		public.Close()
		return err
	}
	// Both servers bound slow and idle clients (see PublicTimeouts and ChannelTimeouts for
	// why each value is what it is); an event stream lifts its own write deadline.
	pub := NewHTTPServer(s.Router, PublicTimeouts)
	ch := NewHTTPServer(s.Channel, ChannelTimeouts)
	s.mu.Lock()
	for _, f := range s.onShutdown {
		pub.RegisterOnShutdown(f)
	}
	s.mu.Unlock()
	if s.cfg.AppToken == "" {
		s.logger.WarnContext(ctx, "APP_API_TOKEN is not set: the app channel takes calls from anything that reaches it", "addr", channel.Addr().String())
	}
	s.logger.InfoContext(ctx, "http servers listening", "public", public.Addr().String(), "app_channel", channel.Addr().String())
	return runner.Group(ctx,
		func(ctx context.Context) error { return runner.ServeHTTP(ctx, pub, public) },
		func(ctx context.Context) error { return runner.ServeHTTP(ctx, ch, channel) })
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	return h
}
