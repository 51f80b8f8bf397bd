package actorhost

import (
	"context"
	"log/slog"
	"time"
)

// SelfCheck heals a sidecar whose calls of its own app's actors hang for good.
//
// daprd 1.18.2 blocks, in each dissemination round, the actor types whose placement
// changes, from the round's UPDATE to its UNLOCK. If placement goes away between the
// two, the sidecar reconnects with a new stream whose first round sees no change (it
// installed that table already), so nothing unlocks the types the cut round blocked:
// every call of them waits forever (found by internal/e2e/outages; a gateway's queue
// then refuses every submission). SelfCheck calls one of the app's own actors through
// the sidecar every Interval; when Failures calls in a row fail while the sidecar says
// it is connected to placement, it makes the app unhealthy (SetLive(false)) for
// Unhealthy: daprd unregisters the app's actor types, and registers them again once the
// app is healthy, in rounds that change those types and so unlock them.
type SelfCheck struct {
	Logger *slog.Logger
	// Probe calls one of the app's own actors through the sidecar.
	Probe func(ctx context.Context) error
	// Connected reports whether the sidecar is connected to placement: while it is not,
	// actor calls wait for it, and that is an outage, not this fault.
	Connected func(ctx context.Context) (bool, error)
	// SetLive sets what the app's health endpoint answers.
	SetLive func(live bool)

	Interval  time.Duration // between probes; default 2 s
	Timeout   time.Duration // of one probe; default 1 s
	Failures  int           // failed probes in a row that count as the fault; default 3
	Unhealthy time.Duration // how long the app reports unhealthy; default 5 s
}

func (c *SelfCheck) withDefaults() SelfCheck {
	d := *c
	if d.Interval <= 0 {
		d.Interval = 2 * time.Second
	}
	if d.Timeout <= 0 {
		d.Timeout = time.Second
	}
	if d.Failures <= 0 {
		d.Failures = 3
	}
	if d.Unhealthy <= 0 {
		d.Unhealthy = 5 * time.Second
	}
	return d
}

// Run probes until ctx ends.
func (c *SelfCheck) Run(ctx context.Context) {
	cfg := c.withDefaults()
	failed := 0
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if cfg.probe(ctx) {
			failed = 0
			continue
		}
		failed++
		if failed < cfg.Failures {
			continue
		}
		failed = 0
		cfg.Logger.WarnContext(ctx, "calls of this app's own actors fail while the sidecar is connected to placement; reporting unhealthy so that the sidecar registers the actor types again",
			"unhealthy_for", cfg.Unhealthy)
		cfg.SetLive(false)
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Unhealthy):
		}
		cfg.SetLive(true)
	}
}

// probe reports whether the sidecar is well: the probe call succeeded, or failed while
// the sidecar is not connected to placement (or cannot say).
func (c *SelfCheck) probe(ctx context.Context) bool {
	pctx, cancel := context.WithTimeout(ctx, c.Timeout)
	err := c.Probe(pctx)
	cancel()
	if err == nil || ctx.Err() != nil {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	connected, cerr := c.Connected(cctx)
	return cerr != nil || !connected
}
