package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/stacktest"
)

// BenchmarkIngest measures how many lifecycle events per second the analytics app
// absorbs (from the broker, through its sidecar and the MySQL binding, into the ledger)
// and the lag from an event to its row (received_at - event_time, p50 and p95). The
// events are published through a sidecar's publish API by 16 publishers at once.
//
//	go test -run '^$' -bench Ingest -benchtime 5000x ./internal/e2e/analytics
func BenchmarkIngest(b *testing.B) {
	st := stacktest.Get(b)
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	db := openDB(b, st)
	sidecar := stacktest.Gateway{Base: st.App("gateway").SidecarURL()}
	run := uuid.NewString()[:8]

	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				task := uuid.New()
				ev, _ := json.Marshal(map[string]any{
					"id": fmt.Sprintf("bench-%s-%d:accepted:0", run, i), "version": 1, "kind": "accepted",
					"time": time.Now().UTC(), "task_id": task, "task": "bench-" + run, "attempt": 0,
				})
				resp, err := sidecar.Do(ctx, http.MethodPost, "/v1.0/publish/pubsub/task-accepted", ev, nil)
				if err != nil || resp.Code/100 != 2 {
					b.Errorf("publish: %d %s %v", resp.Code, resp.Body, err)
					return
				}
			}
		})
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()
	published := time.Since(start)

	var n int
	for n < b.N {
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM events WHERE task_type = ?", "bench-"+run).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if ctx.Err() != nil {
			b.Fatalf("%d of %d events arrived", n, b.N)
		}
		time.Sleep(20 * time.Millisecond)
	}
	all := time.Since(start)
	var p50, p95 float64
	if err := db.QueryRowContext(ctx, `SELECT MAX(p50), MAX(p95) FROM (
  SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY lag) OVER () AS p50, PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY lag) OVER () AS p95
  FROM (SELECT TIMESTAMPDIFF(MICROSECOND, event_time, received_at) / 1e6 AS lag FROM events WHERE task_type = ?) AS l) AS p`, "bench-"+run).Scan(&p50, &p95); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/all.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/published.Seconds(), "published/s")
	b.ReportMetric(p50, "lag-p50-s")
	b.ReportMetric(p95, "lag-p95-s")
}
