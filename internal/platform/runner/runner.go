// Package runner holds the process plumbing every app shares: a signal-aware context, a
// group that runs loops until the first one fails, and an HTTP server that shuts down
// gracefully when its context ends.
package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// ShutdownTimeoutDefault bounds a graceful HTTP shutdown.
const ShutdownTimeoutDefault = 10 * time.Second

// SignalContext returns a context cancelled by the first SIGINT or SIGTERM. A second
// signal exits the process at once with status 130 (for an operator who does not want
// to wait for a graceful stop).
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			signal.Stop(ch)
			return
		}
		select {
		case <-ch:
			os.Exit(130)
		case <-parent.Done():
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// Func is one long-running part of a process. It returns when ctx is done (nil) or
// when it fails.
type Func func(ctx context.Context) error

// Group runs every fn until one fails; then it cancels the others, waits for them, and
// returns the first error that is not a plain cancellation. A fn that returns nil has
// finished its work and leaves the others running.
func Group(ctx context.Context, fns ...Func) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, fn := range fns {
		wg.Go(func() {
			err := fn(ctx)
			if err != nil {
				cancel()
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// ServeHTTP serves srv on ln until ctx is done, then shuts it down gracefully within
// ShutdownTimeoutDefault (long-lived responses such as SSE streams must watch
// srv.RegisterOnShutdown or the request context to end in time).
func ServeHTTP(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeoutDefault)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shut down http server on %s: %w", ln.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Listen opens a TCP listener and turns "address already in use" into a message that
// says which port and what to do.
func Listen(addr, what string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s: %s is already in use by another program (stop it or choose another port)", what, addr)
		}
		return nil, fmt.Errorf("%s: listen on %s: %w", what, addr, err)
	}
	return ln, nil
}
