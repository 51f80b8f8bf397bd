package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/mysqlbinding"
	"github.com/taskgrid/taskgrid/internal/adapters/recent"
)

// Activity reads the recent activity the gateways' overview shows from the ledger:
// completions per minute, and failure and cancellation counts, over recent.Window before
// now. Minutes are counted from the window's first minute by TIMESTAMPDIFF, so no time
// zone is involved (the ledger keeps UTC).
func (l Ledger) Activity(ctx context.Context, now time.Time) (recent.Activity, error) {
	since := now.UTC().Add(-recent.Window).Truncate(time.Minute)
	a := recent.Activity{Since: since, At: now.UTC(), Completed: []recent.Minute{}}
	var minutes []struct {
		M mysqlbinding.Int `json:"m"`
		N mysqlbinding.Int `json:"n"`
	}
	if err := l.DB.Query(ctx, &minutes, `SELECT TIMESTAMPDIFF(MINUTE, ?, event_time) AS m, COUNT(*) AS n
FROM events WHERE kind = 'completed' AND event_time >= ? GROUP BY m ORDER BY m`, mysqlTime(since), mysqlTime(since)); err != nil {
		return a, fmt.Errorf("count completions per minute: %w", err)
	}
	for _, m := range minutes {
		a.Completed = append(a.Completed, recent.Minute{Start: since.Add(time.Duration(m.M) * time.Minute), Completed: int(m.N)})
	}
	var counts []struct {
		Recovered      mysqlbinding.Int `json:"recovered"`
		AttemptsFailed mysqlbinding.Int `json:"attempts_failed"`
		Failed         mysqlbinding.Int `json:"failed"`
		Cancelled      mysqlbinding.Int `json:"cancelled"`
	}
	if err := l.DB.Query(ctx, &counts, `SELECT
  CAST(COALESCE(SUM(kind = 'started' AND attempt > 1), 0) AS SIGNED) AS recovered,
  CAST(COALESCE(SUM(kind = 'attempt_failed'), 0) AS SIGNED) AS attempts_failed,
  CAST(COALESCE(SUM(kind = 'failed'), 0) AS SIGNED) AS failed,
  CAST(COALESCE(SUM(kind = 'cancelled'), 0) AS SIGNED) AS cancelled
FROM events WHERE kind IN ('started', 'attempt_failed', 'failed', 'cancelled') AND event_time >= ?`, mysqlTime(since)); err != nil {
		return a, fmt.Errorf("count failures and cancellations: %w", err)
	}
	if len(counts) == 1 {
		c := counts[0]
		a.Recovered, a.AttemptsFailed, a.Failed, a.Cancelled = int(c.Recovered), int(c.AttemptsFailed), int(c.Failed), int(c.Cancelled)
	}
	return a, nil
}

// serveActivity answers GET /overview (service invocation, from the gateways).
func (in *Ingest) serveActivity(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	a, err := in.Ledger.Activity(ctx, time.Now())
	if err != nil {
		in.Logger.WarnContext(ctx, "recent activity unavailable", "error", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a)
}
