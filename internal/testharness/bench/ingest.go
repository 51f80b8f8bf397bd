package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql" // the analytics database, read directly

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// ingestPublishers publish the analytics scenario's events at once.
const ingestPublishers = 16

// ingest measures the analytics app: how many lifecycle events per second it takes from
// the broker, through its sidecar's bulk subscription and the MySQL output binding, into
// the ledger, and the lag from an event's time to its row.
//
// Live: IngestEvents events published by 16 publishers through a sidecar while the app
// runs; the rate is bounded by the publishers, and the lag is the one users see.
// Backlog: the analytics app and its sidecar stopped, the same number of events
// published, the app started again; the rate at which it works off the backlog (first
// to last row written) is what it can absorb.
func ingest(ctx context.Context, e *Env) ([]Measure, error) {
	st, n := e.Stack, e.Config.IngestEvents
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	db, err := sql.Open("mysql", st.MySQLDSN)
	if err != nil {
		return nil, fmt.Errorf("open analytics database: %w", err)
	}
	defer db.Close()
	sidecar := st.App("gateway").SidecarClient()

	live := "bench-" + uuid.NewString()[:8]
	start := time.Now()
	if err := publishEvents(ctx, sidecar, live, n); err != nil {
		return nil, err
	}
	published := time.Since(start)
	if err := waitRows(ctx, db, live, n); err != nil {
		return nil, err
	}
	arrived := time.Since(start)
	var p50, p95 float64
	if err := db.QueryRowContext(ctx, `SELECT MAX(p50), MAX(p95) FROM (
  SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY lag) OVER () AS p50, PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY lag) OVER () AS p95
  FROM (SELECT TIMESTAMPDIFF(MICROSECOND, event_time, received_at) / 1e3 AS lag FROM events WHERE task_type = ?) AS l) AS p`, live).Scan(&p50, &p95); err != nil {
		return nil, fmt.Errorf("read event lag: %w", err)
	}

	backlog := "bench-" + uuid.NewString()[:8]
	an := st.App("analytics")
	an.Stop()
	if err := publishEvents(ctx, sidecar, backlog, n); err != nil {
		return nil, err
	}
	if err := an.Start(ctx); err != nil {
		return nil, err
	}
	if err := waitRows(ctx, db, backlog, n); err != nil {
		return nil, err
	}
	var span float64
	if err := db.QueryRowContext(ctx, `SELECT TIMESTAMPDIFF(MICROSECOND, MIN(received_at), MAX(received_at)) / 1e6
FROM events WHERE task_type = ?`, backlog).Scan(&span); err != nil {
		return nil, fmt.Errorf("read backlog span: %w", err)
	}
	return []Measure{
		{"live: published", "events/s", float64(n) / published.Seconds()},
		{"live: absorbed", "events/s", float64(n) / arrived.Seconds()},
		{"live: event→row lag p50", "ms", p50},
		{"live: event→row lag p95", "ms", p95},
		{"backlog: absorbed", "events/s", float64(n) / max(span, 0.001)},
	}, nil
}

// publishEvents publishes n "accepted" events of task type typ through a sidecar's
// publish API, from ingestPublishers publishers at once.
func publishEvents(ctx context.Context, sidecar stacktest.Gateway, typ string, n int) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range ingestPublishers {
		wg.Go(func() {
			for i := range next {
				ev, _ := json.Marshal(map[string]any{
					"id": fmt.Sprintf("%s-%d:accepted:0", typ, i), "version": 1, "kind": "accepted",
					"time": time.Now().UTC(), "task_id": uuid.New(), "task": typ, "attempt": 0,
				})
				resp, err := sidecar.Do(ctx, http.MethodPost, "/v1.0/publish/pubsub/"+events.TopicEvents, ev, nil)
				if err == nil && resp.Code/100 != 2 {
					err = fmt.Errorf("publish: %d %s", resp.Code, resp.Body)
				}
				if err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// waitRows waits until the ledger holds n events of task type typ.
func waitRows(ctx context.Context, db *sql.DB, typ string, n int) error {
	var got int
	for got < n {
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM events WHERE task_type = ?", typ).Scan(&got); err != nil {
			return fmt.Errorf("count events: %w", err)
		}
		if err := pause(ctx); err != nil {
			return fmt.Errorf("%d of %d events reached the ledger: %w", got, n, err)
		}
	}
	return nil
}
