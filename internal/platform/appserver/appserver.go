// Package appserver is the HTTP skeleton every app shares: configuration common to all
// apps, a chi router with /healthz (liveness, probed by daprd), /readyz (dependencies)
// and /metrics (Prometheus), request metrics, and a graceful run loop.
package appserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
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
)

// Config is what every app reads from its environment. dapr run exports APP_ID,
// APP_PORT, DAPR_HTTP_PORT and DAPR_GRPC_PORT.
type Config struct {
	AppID string
	// Instance names this process among the instances of its app (NODE_ID, else the host
	// name); it must be stable across restarts, like a StatefulSet pod name.
	Instance string
	Host     string
	Port     int
	LogLevel string
	Sidecar  sidecar.Config
	// Profiling serves Go's pprof under /debug/pprof (PROFILING=true); off by default.
	Profiling bool
}

// LoadConfig reads the common configuration; defaultID and defaultPort apply when
// APP_ID and APP_PORT are unset.
func LoadConfig(r *env.Reader, defaultID string, defaultPort int) Config {
	return Config{
		AppID:     r.String("APP_ID", defaultID),
		Instance:  r.String("NODE_ID", hostname()),
		Host:      r.String("APP_HOST", "127.0.0.1"),
		Port:      r.Port("APP_PORT", defaultPort),
		LogLevel:  r.String("LOG_LEVEL", "info"),
		Sidecar:   sidecar.LoadConfig(r),
		Profiling: r.Bool("PROFILING", false),
	}
}

// Addr is the address the app listens on.
func (c Config) Addr() string { return c.Host + ":" + strconv.Itoa(c.Port) }

// CheckFunc reports whether one dependency is usable.
type CheckFunc func(ctx context.Context) error

// Server is an app's HTTP server. Add routes to Router before Run.
type Server struct {
	Router chi.Router
	logger *slog.Logger
	cfg    Config

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
	s := &Server{Router: chi.NewRouter(), logger: logger, cfg: cfg, checks: map[string]CheckFunc{}}
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

	s.Router.Use(middleware.Recoverer, func(next http.Handler) http.Handler {
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
	})
	s.Router.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if s.unhealthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
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

// Run listens on the configured address and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := runner.Listen(s.cfg.Addr(), s.cfg.AppID+" app port (APP_PORT)")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Router, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	for _, f := range s.onShutdown {
		srv.RegisterOnShutdown(f)
	}
	s.mu.Unlock()
	s.logger.InfoContext(ctx, "http server listening", "addr", ln.Addr().String())
	return runner.ServeHTTP(ctx, srv, ln)
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	return h
}
