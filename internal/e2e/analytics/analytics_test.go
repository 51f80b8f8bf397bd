// Package analytics checks the analytics app end to end: lifecycle events from the real
// apps reach MySQL through Kafka, the analytics sidecar and the MySQL output binding,
// and the tables are exact, also when events come twice or the app restarts mid-run.
package analytics

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

func TestMain(m *testing.M) {
	stacktest.Main(m, stacktest.Options{AppEnv: map[string]map[string]string{
		"worker":    {"POOL_SIZE": "3"},
		"analytics": {"TRIGGER_INTERVAL": "500ms", "BULK_WAIT": "100ms", "PERCENTILES_EVERY": "2s"},
	}})
}

// facts is what the analytics tables say about a set of tasks.
type facts struct {
	Completed, Failed, Pending int
	Starts, FailedAttempts     int
	Events                     int
}

func readFacts(ctx context.Context, db *sql.DB, ids []string) (facts, error) {
	in := "'" + strings.Join(ids, "','") + "'"
	var f facts
	err := db.QueryRowContext(ctx, `SELECT
  COUNT(completed_at), COUNT(failed_at),
  COALESCE(SUM(accepted_at IS NOT NULL AND first_started_at IS NULL AND completed_at IS NULL AND failed_at IS NULL), 0),
  COALESCE(SUM(starts), 0), COALESCE(SUM(failed_attempts), 0)
FROM task_facts WHERE task_id IN (`+in+`)`).Scan(&f.Completed, &f.Failed, &f.Pending, &f.Starts, &f.FailedAttempts)
	if err != nil {
		return f, err
	}
	err = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE task_id IN (`+in+`)`).Scan(&f.Events)
	return f, err
}

// waitFacts polls until the tables show want for ids.
func waitFacts(ctx context.Context, t *testing.T, db *sql.DB, ids []string, want facts) {
	t.Helper()
	var got facts
	var err error
	for {
		got, err = readFacts(ctx, db, ids)
		if err == nil && got == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("analytics tables show %+v (%v), want %+v", got, err, want)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// submit submits n sleep tasks, every third failing its first attempt on purpose; it
// returns their ids and the facts the tables must show once they are done.
func submit(ctx context.Context, t *testing.T, gw stacktest.Gateway, n int) ([]string, facts) {
	t.Helper()
	var ids []string
	want := facts{}
	for i := range n {
		payload := map[string]any{"ms": 50}
		failures := 0
		if i%3 == 0 {
			failures = 1
			payload["forceFailure"] = failures
		}
		v, err := gw.Submit(ctx, "sleep", payload, "analytics")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
		want.Completed++
		want.Starts += failures + 1
		want.FailedAttempts += failures
		want.Events += 1 + 2*(failures+1) // accepted, a start and an end per attempt
	}
	return ids, want
}

// wait waits until every task completed.
func wait(ctx context.Context, t *testing.T, gw stacktest.Gateway, ids []string) {
	t.Helper()
	for _, id := range ids {
		if v, err := gw.WaitStatus(ctx, id, "completed", "failed"); err != nil || v.Status != "completed" {
			t.Fatalf("task %s: %+v, %v", id, v, err)
		}
	}
}

// begin gets the package's stack, a context bounded by d (cancelled when the test
// ends) and the stack's MySQL database.
func begin(t *testing.T, d time.Duration) (context.Context, *stacktest.Stack, *sql.DB) {
	t.Helper()
	st := stacktest.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx, st, openDB(t, st)
}

func openDB(t testing.TB, st *stacktest.Stack) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", st.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// N tasks, some failing once: after the next trigger the tables show exactly N
// completed, the right starts per task, and nothing pending. Feeding every event of
// the run again changes nothing.
func TestTablesAreExact(t *testing.T) {
	ctx, st, db := begin(t, 2*time.Minute)

	ids, want := submit(ctx, t, st.Gateway(), 24)
	wait(ctx, t, st.Gateway(), ids)
	waitFacts(ctx, t, db, ids, want)
	var avg float64
	in := "'" + strings.Join(ids, "','") + "'"
	if err := db.QueryRowContext(ctx, `SELECT AVG(starts) FROM task_facts WHERE task_id IN (`+in+`)`).Scan(&avg); err != nil {
		t.Fatal(err)
	}
	// AVG of integers is a DECIMAL with 4 decimal places in MariaDB.
	if wantAvg := float64(want.Starts) / float64(len(ids)); math.Abs(avg-wantAvg) > 0.00005 {
		t.Errorf("average starts per task = %v, want %.4f", avg, wantAvg)
	}

	// Publish every event of the run again, as a redelivery would.
	before := ingested(t, st)
	rows, err := db.QueryContext(ctx, `SELECT id, kind, task_id, task_type, attempt, priority, worker, event_time FROM events WHERE task_id IN (`+in+`)`)
	if err != nil {
		t.Fatal(err)
	}
	sidecar := st.App("analytics").SidecarClient()
	republished := 0
	for rows.Next() {
		var id, kind, task, typ, priority, worker string
		var attempt int
		var at time.Time
		if err := rows.Scan(&id, &kind, &task, &typ, &attempt, &priority, &worker, &at); err != nil {
			t.Fatal(err)
		}
		ev, _ := json.Marshal(map[string]any{"id": id, "version": 1, "kind": kind, "time": at, "task_id": task, "task": typ, "attempt": attempt, "priority": priority, "worker": worker})
		topic, err := events.Topic(kind)
		if err != nil {
			t.Fatalf("event %s: %v", id, err)
		}
		resp, err := sidecar.Do(ctx, http.MethodPost, "/v1.0/publish/pubsub/"+topic+"?metadata.cloudevent.id="+id, ev, nil)
		if err != nil || resp.Code/100 != 2 {
			t.Fatalf("republish %s: %d %s %v", id, resp.Code, resp.Body, err)
		}
		republished++
	}
	if err := rows.Err(); err != nil || republished != want.Events {
		t.Fatalf("republished %d events (%v), want %d", republished, err, want.Events)
	}
	// The repeats reach the analytics app (it counts what it writes, repeats included)
	// and leave every table as it was.
	for ingested(t, st) < before+float64(republished) {
		if ctx.Err() != nil {
			t.Fatalf("the republished events never arrived (%v of %d)", ingested(t, st)-before, republished)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // two triggers
	if got, err := readFacts(ctx, db, ids); err != nil || got != want {
		t.Fatalf("after the repeats the tables show %+v (%v), want %+v", got, err, want)
	}
	checkWindows(ctx, t, db)
}

// ingested is how many events the analytics app has written (repeats included).
func ingested(t *testing.T, st *stacktest.Stack) float64 {
	t.Helper()
	return stacktest.MustScrapeMetrics(t, st.App("analytics").BaseURL()).Sum("taskgrid_analytics_events_ingested_total")
}

// Killing the analytics app mid-run and starting it again neither loses nor double
// counts: what was not acknowledged comes again, and repeats are ignored.
func TestAnalyticsRestartMidRun(t *testing.T) {
	ctx, st, db := begin(t, 3*time.Minute)
	in := st.App("analytics")
	gw := st.Gateway()

	ids, want := submit(ctx, t, gw, 30)
	// Kill as soon as the first events of the run are written: most are still to come.
	for {
		got, err := readFacts(ctx, db, ids)
		if err == nil && got.Events > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no event of the run reached the ledger: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	in.App.Kill()
	wait(ctx, t, gw, ids) // the tasks run on while analytics is down
	if got, err := readFacts(ctx, db, ids); err != nil || got.Events >= want.Events {
		t.Fatalf("before the restart the ledger has %d of %d events (%v): the kill came too late to test anything", got.Events, want.Events, err)
	}
	if err := in.StartApp(ctx); err != nil {
		t.Fatal(err)
	}
	waitFacts(ctx, t, db, ids, want)
	checkWindows(ctx, t, db)
}

// The migrations ran once and are recorded.
func TestMigrationsRecorded(t *testing.T) {
	st := stacktest.Get(t)
	db := openDB(t, st)
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM schema_migrations WHERE version IN (1, 2)").Scan(&n); err != nil || n != 2 {
		t.Fatalf("schema_migrations has %d rows for versions 1 and 2 (%v)", n, err)
	}
	for _, table := range []string{"events", "task_facts", "pending_samples", "trigger_state"} {
		if _, err := db.ExecContext(t.Context(), fmt.Sprintf("SELECT 1 FROM %s LIMIT 1", table)); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
}

// With the broker down for 30 s mid-run, tasks go on and complete (events wait in the
// apps' outboxes); once it is back every event arrives and the tables are exact.
func TestBrokerOutage(t *testing.T) {
	ctx, st, db := begin(t, 4*time.Minute)
	gw := st.Gateway()

	before, wantBefore := submit(ctx, t, gw, 9)
	st.Service("kafka").Kill()
	down := time.Now()
	during, wantDuring := submit(ctx, t, gw, 9)
	ids := append(before, during...)
	wait(ctx, t, gw, ids) // every task completes with the broker down
	t.Logf("all %d tasks completed %s into the outage", len(ids), time.Since(down).Round(time.Millisecond))
	if spooled := outboxDepth(t, st); spooled == 0 {
		t.Fatal("no event waits in an outbox during the outage")
	}
	time.Sleep(30*time.Second - time.Since(down))
	if err := st.RestartService(ctx, "kafka", st.KafkaAddr); err != nil {
		t.Fatal(err)
	}
	want := facts{
		Completed: wantBefore.Completed + wantDuring.Completed, Starts: wantBefore.Starts + wantDuring.Starts,
		FailedAttempts: wantBefore.FailedAttempts + wantDuring.FailedAttempts, Events: wantBefore.Events + wantDuring.Events,
	}
	waitFacts(ctx, t, db, ids, want)
	for outboxDepth(t, st) > 0 {
		if ctx.Err() != nil {
			t.Fatal("outboxes never drained")
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkWindows(ctx, t, db)
}

// outboxDepth adds up the events waiting in the outboxes of every publishing app.
func outboxDepth(t *testing.T, st *stacktest.Stack) float64 {
	t.Helper()
	var total float64
	for _, id := range []string{"gateway", "worker", "storekeeper"} {
		for _, in := range st.Apps(id) {
			m, err := stacktest.ScrapeMetrics(t.Context(), in.BaseURL())
			if err != nil {
				t.Fatal(err)
			}
			total += m.Sum("taskgrid_events_outbox_depth")
		}
	}
	return total
}

// With MariaDB stopped for a while mid-run, the analytics app answers RETRY, the
// sidecar delivers again, and the tables end exact once it is back.
func TestDatabaseOutage(t *testing.T) {
	ctx, st, db := begin(t, 4*time.Minute)
	gw := st.Gateway()

	st.Service("mariadb").Kill()
	ids, want := submit(ctx, t, gw, 12)
	wait(ctx, t, gw, ids)
	time.Sleep(5 * time.Second) // deliveries fail and are retried meanwhile
	if err := st.RestartService(ctx, "mariadb", st.MySQLAddr); err != nil {
		t.Fatal(err)
	}
	waitFacts(ctx, t, db, ids, want)
	checkWindows(ctx, t, db)
}

// Every statistics query README gives (analytics/queries) runs on the real tables and
// agrees with the tasks run.
func TestStatisticsQueries(t *testing.T) {
	ctx, st, db := begin(t, 2*time.Minute)
	ids, want := submit(ctx, t, st.Gateway(), 6)
	wait(ctx, t, st.Gateway(), ids)
	waitFacts(ctx, t, db, ids, want)

	files, err := filepath.Glob(filepath.Join(st.RepoRoot, "analytics", "queries", "*.sql"))
	if err != nil || len(files) < 5 {
		t.Fatalf("queries: %v, %v", files, err)
	}
	results := map[string][]map[string]string{}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := queryStrings(ctx, db, string(text))
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		if len(rows) == 0 {
			t.Errorf("%s: no rows", filepath.Base(f))
		}
		results[filepath.Base(f)] = rows
	}
	// Every grain counts every completed task once.
	var completedTasks int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM task_facts WHERE completed_at IS NOT NULL").Scan(&completedTasks); err != nil {
		t.Fatal(err)
	}
	perGrain := map[string]int{}
	for _, r := range results["completed_per_window.sql"] {
		n, _ := strconv.Atoi(r["completed"])
		perGrain[r["grain"]] += n
	}
	for _, g := range []string{"minute", "hour", "day", "week", "month"} {
		if perGrain[g] != completedTasks {
			t.Errorf("completed per %s adds up to %d, want %d", g, perGrain[g], completedTasks)
		}
	}
	for _, r := range results["durations_per_hour.sql"] {
		for _, col := range []string{"wait_p50", "wait_p95", "run_p50", "run_p95", "e2e_p95"} {
			if v, err := strconv.ParseFloat(r[col], 64); err != nil || v < 0 {
				t.Errorf("durations_per_hour.sql: %s = %q", col, r[col])
			}
		}
	}
}

// querier is a database or one of its connections.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryStrings runs a query and returns its rows as column → text.
func queryStrings(ctx context.Context, db querier, q string, args ...any) ([]map[string]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = vals[i].String
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// A gateway killed before it published the accepted events of the tasks it accepted
// (they wait ACCEPTED_EVENTS_DELAY, here a minute, so that the kill comes first)
// loses none of them: each task's first start publishes its acceptance again, and the
// tables are exact.
func TestAcceptedEventsOfAKilledGateway(t *testing.T) {
	ctx, st, db := begin(t, 3*time.Minute)
	in := st.App("gateway")
	restart := func(ctx context.Context, delay string) {
		t.Helper()
		in.App.Kill()
		if delay == "" {
			delete(in.Env, "ACCEPTED_EVENTS_DELAY")
		} else {
			in.Env["ACCEPTED_EVENTS_DELAY"] = delay
		}
		if err := in.StartApp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if in.Env == nil {
		in.Env = map[string]string{}
	}
	restart(ctx, "1m")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
		defer cancel()
		restart(ctx, "")
	})

	gw := st.Gateway()
	ids, want := submit(ctx, t, gw, 9)
	wait(ctx, t, gw, ids)
	in.App.Kill() // with the nine accepted events unpublished
	waitFacts(ctx, t, db, ids, want)
	var accepted int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE kind = 'accepted' AND task_id IN ('`+strings.Join(ids, "','")+`')`).Scan(&accepted); err != nil || accepted != len(ids) {
		t.Fatalf("%d accepted events in the ledger (%v), want %d", accepted, err, len(ids))
	}
	checkWindows(ctx, t, db)
}
