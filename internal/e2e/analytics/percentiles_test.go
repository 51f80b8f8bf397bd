package analytics

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// histTolerance is how far an hour's percentile, merged from its minutes' histograms,
// may be from the exact one: half a bucket (buckets are 1 % wide).
const histTolerance = 0.005

// closeToHist says whether got is within histTolerance of want (and of a microsecond,
// the times' precision).
func closeToHist(got, want float64) bool {
	return math.Abs(got-want) <= histTolerance*math.Abs(want)+2e-6
}

// An hour's percentiles, merged from its minutes' histograms by the app's own statements
// (percentiles_minute.sql, then percentiles_hour.sql), are within half a bucket of the
// exact ones, computed here from the same times: one task, two in different minutes
// (interpolated across buckets), and 600 spread over ten minutes from a microsecond to
// two minutes, with zeros among them. The minutes' percentiles stay exact, and a
// minute's recompute marks its hour again. The statements run on this connection's
// temporary tables, which hide the real ones from it alone.
func TestHourPercentilesFromMinuteHistograms(t *testing.T) {
	st := stacktest.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, exec := temporaryTables(ctx, t, st, "task_facts", "stats_dirty_percentiles", "window_stats", "window_hist")

	hour := time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC)
	type sample struct {
		minute    int
		wait, run time.Duration
		typ       string
	}
	samples := []sample{{minute: 7, wait: 1500 * time.Millisecond, run: 40 * time.Millisecond, typ: "one"},
		{minute: 1, wait: time.Second, run: 3 * time.Millisecond, typ: "two"}, {minute: 2, wait: 2 * time.Second, run: 5 * time.Millisecond, typ: "two"}}
	rng := rand.New(rand.NewPCG(7, 13))
	for i := range 600 {
		logUniform := func() time.Duration { // a microsecond to two minutes
			return time.Duration(math.Exp(rng.Float64()*math.Log(120e6))) * time.Microsecond
		}
		s := sample{minute: 20 + i%10, wait: logUniform(), run: logUniform(), typ: "many"}
		if i%50 == 0 {
			s.wait = 0
		}
		samples = append(samples, s)
	}
	ts := func(t time.Time) string { return t.Format("2006-01-02 15:04:05.000000") }
	type key struct {
		grain string
		start time.Time
		typ   string
	}
	times := map[key][3][]float64{} // wait, run, e2e of each window's tasks
	for i, s := range samples {
		completed := hour.Add(time.Duration(s.minute)*time.Minute + time.Duration(i)*time.Millisecond)
		last := completed.Add(-s.run)
		accepted := last.Add(-s.wait)
		exec(`INSERT INTO task_facts (task_id, task_type, accepted_at, first_started_at, last_started_at, completed_at, starts, failed_attempts)
VALUES (?, ?, ?, ?, ?, ?, 1, 0)`, uuid.NewString(), s.typ, ts(accepted), ts(last), ts(last), ts(completed))
		for _, k := range []key{{"minute", completed.Truncate(time.Minute), s.typ}, {"hour", hour, s.typ}} {
			v := times[k]
			v[0], v[1], v[2] = append(v[0], s.wait.Seconds()), append(v[1], s.run.Seconds()), append(v[2], (s.wait+s.run).Seconds())
			times[k] = v
		}
	}
	var minutes []any
	for k := range times {
		exec("INSERT INTO window_stats (grain, window_start, task_type) VALUES (?, ?, ?)", k.grain, ts(k.start), k.typ)
		if k.grain == "minute" {
			minutes = append(minutes, ts(k.start))
			exec("INSERT IGNORE INTO stats_dirty_percentiles (grain, window_start, since) VALUES ('minute', ?, UTC_TIMESTAMP(6))", ts(k.start))
		}
	}

	read := func(name string) []string { return sqlStatements(t, st.RepoRoot, "sql", name) }
	widen := func(stmt string, n int) string {
		return strings.Replace(stmt, "IN (?)", "IN (?"+strings.Repeat(",?", n-1)+")", 1)
	}
	for _, stmt := range read("percentiles_minute.sql") {
		exec(widen(stmt, len(minutes)), minutes...)
	}
	var marked int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM stats_dirty_percentiles WHERE grain = 'hour' AND window_start = ?", ts(hour)).Scan(&marked); err != nil {
		t.Fatal(err)
	}
	if marked != 1 {
		t.Fatalf("the minutes' recompute marked their hour %d times, want once", marked)
	}
	// Migration 006 gives the minutes stored before it the same histograms.
	histogram := func() string {
		t.Helper()
		rows, err := queryStrings(ctx, conn, "SELECT window_start, task_type, metric, bucket, n FROM window_hist ORDER BY 1, 2, 3, 4")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(len(rows), rows)
	}
	written := histogram()
	exec("DELETE FROM window_hist")
	if stmts := sqlStatements(t, st.RepoRoot, "migrations", "006_window_hist.sql"); len(stmts) != 2 {
		t.Fatalf("migration 006: %d statements, want the table and its backfill", len(stmts))
	} else {
		exec(stmts[1])
	}
	if backfilled := histogram(); backfilled != written || strings.HasPrefix(written, "0 ") {
		t.Fatalf("migration 006 wrote\n%.300s\na minute's recompute\n%.300s", backfilled, written)
	}

	for _, stmt := range read("percentiles_hour.sql") {
		exec(widen(stmt, 1), ts(hour))
	}

	rows, err := conn.QueryContext(ctx, `SELECT grain, window_start, task_type, wait_p50, wait_p95, run_p50, run_p95, e2e_p50, e2e_p95 FROM window_stats`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	checked := map[string]int{}
	for rows.Next() {
		var k key
		var got [6]sql.NullFloat64
		if err := rows.Scan(&k.grain, &k.start, &k.typ, &got[0], &got[1], &got[2], &got[3], &got[4], &got[5]); err != nil {
			t.Fatal(err)
		}
		k.start = k.start.UTC()
		v, ok := times[k]
		if !ok {
			t.Fatalf("a row for %v that no task is in", k)
		}
		for i, p := range []float64{0.5, 0.95, 0.5, 0.95, 0.5, 0.95} {
			want := percentileCont(v[i/2], p)
			switch {
			case !got[i].Valid:
				t.Errorf("%v: percentile %d not set", k, i)
			case k.grain == "minute" && math.Abs(got[i].Float64-want) > 2e-6:
				t.Errorf("%v: minute percentile %d = %v, want exactly %v", k, i, got[i].Float64, want)
			case k.grain == "hour" && !closeToHist(got[i].Float64, want):
				t.Errorf("%v: hour percentile %d = %v, want %v within %v", k, i, got[i].Float64, want, histTolerance)
			}
		}
		checked[k.grain]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if checked["hour"] != 3 || checked["minute"] != 13 {
		t.Errorf("checked %v, want 3 hour rows and 13 minute rows", checked)
	}
}
