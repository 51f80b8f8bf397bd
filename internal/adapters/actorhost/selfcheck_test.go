package actorhost

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeSidecar answers SelfCheck's probes as the test sets.
type fakeSidecar struct {
	mu        sync.Mutex
	probeErr  error
	connected bool
	live      []bool // every SetLive call, in order
}

func (f *fakeSidecar) check() *SelfCheck {
	return &SelfCheck{
		Logger: slog.New(slog.DiscardHandler),
		Probe: func(context.Context) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.probeErr
		},
		Connected: func(context.Context) (bool, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.connected, nil
		},
		SetLive: func(live bool) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.live = append(f.live, live)
		},
	}
}

func (f *fakeSidecar) set(probeErr error, connected bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probeErr, f.connected = probeErr, connected
}

func (f *fakeSidecar) liveCalls() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.live...)
}

func TestSelfCheck(t *testing.T) {
	hang := errors.New("context deadline exceeded")
	tests := []struct {
		name      string
		probeErr  error
		connected bool
		after     time.Duration
		want      []bool
	}{
		{"healthy sidecar: nothing", nil, true, 10 * time.Second, nil},
		{"placement down: an outage, not the fault", hang, false, 20 * time.Second, nil},
		{"two failures: not yet", hang, true, 5 * time.Second, nil},
		{"three failures while connected: unhealthy", hang, true, 7 * time.Second, []bool{false}},
		{"then healthy again after Unhealthy", hang, true, 12 * time.Second, []bool{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeSidecar{}
				f.set(tt.probeErr, tt.connected)
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() { defer close(done); f.check().Run(ctx) }()
				time.Sleep(tt.after - time.Millisecond) // probes at 2, 4, 6 s; unhealthy 6 → 11 s
				synctest.Wait()
				got := f.liveCalls()
				cancel()
				<-done
				if len(got) != len(tt.want) {
					t.Fatalf("SetLive calls %v, want %v", got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Fatalf("SetLive calls %v, want %v", got, tt.want)
					}
				}
			})
		})
	}
}

// A sidecar that recovers by itself before the third failure is left alone.
func TestSelfCheckFailuresMustBeInARow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSidecar{}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go f.check().Run(ctx)
		hang := errors.New("hang")
		time.Sleep(time.Second) // change between the probes (at 2, 4, 6 s, ...)
		for range 5 {           // fail, fail, succeed, ...
			f.set(hang, true)
			time.Sleep(4 * time.Second)
			f.set(nil, true)
			time.Sleep(2 * time.Second)
		}
		synctest.Wait()
		if got := f.liveCalls(); len(got) != 0 {
			t.Fatalf("SetLive calls %v, want none: the failures were never three in a row", got)
		}
	})
}
