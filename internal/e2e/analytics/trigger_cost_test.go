package analytics

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/mysqlbinding"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// A trigger costs what its new events touch, not the size of the ledger. The trigger's
// statements are the analytics app's own files, run in the order its trigger runs them,
// on this connection's temporary tables (which hide the real tables from it alone: the
// analytics app keeps working on its own):
//   - on a ledger of historyTasks tasks (three events each, two days old), each statement
//     of a trigger over the events of touchedTasks new tasks reads at most readsPerTask
//     rows per new task, by MariaDB's own handler counters;
//   - when the new events are most of the ledger (a fresh database, a backlog after an
//     outage), MariaDB's plan for the statements that find the new events' tasks still
//     reads events and task_facts by key, never in full. Written as "task_id IN (...)",
//     they were planned as a scan of the whole table once the new events were a large
//     share of it (a third, in the bench's runs; not a tenth): at 500 tasks/s on a fresh
//     database, that scan and REPLACE's rewrite of every index entry made each trigger
//     take about 0.45 s of MariaDB's CPU, every 5 s.
func TestTriggerReadsWhatNewEventsTouch(t *testing.T) {
	const historyTasks, touchedTasks, readsPerTask, backlogTasks = 3000, 5, 40, 6000
	st := stacktest.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	conn, exec := temporaryTables(ctx, t, st, "events", "task_facts", "stats_dirty", "stats_dirty_percentiles", "window_stats")

	trigger := triggerStatements(t, st.RepoRoot)
	idle := -handlerReads(ctx, t, conn) + handlerReads(ctx, t, conn) // what reading the counters reads
	run := func(from, to int64) map[string]int64 {
		reads := map[string]int64{}
		for _, s := range trigger {
			before := handlerReads(ctx, t, conn)
			exec(s.sql, s.args(from, to)...)
			reads[s.name] += handlerReads(ctx, t, conn) - before - idle
		}
		return reads
	}
	insertTasks(ctx, t, conn, historyTasks, time.Now().UTC().Add(-48*time.Hour))
	history := maxSeq(ctx, t, conn)
	run(0, history)

	insertTasks(ctx, t, conn, touchedTasks, time.Now().UTC())
	latest := maxSeq(ctx, t, conn)
	reads := run(history, latest)
	var facts int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM task_facts WHERE completed_at > UTC_TIMESTAMP() - INTERVAL 1 HOUR").Scan(&facts); err != nil {
		t.Fatal(err)
	}
	if facts != touchedTasks {
		t.Fatalf("the trigger made facts for %d new tasks, want %d", facts, touchedTasks)
	}
	for _, s := range trigger {
		if n := reads[s.name]; n > touchedTasks*readsPerTask {
			t.Errorf("%s read %d rows for %d new tasks on a ledger of %d tasks, want at most %d", s.name, n, touchedTasks, historyTasks, touchedTasks*readsPerTask)
		}
	}
	t.Logf("rows read per statement for %d new tasks (ledger of %d tasks): %v", touchedTasks, historyTasks, reads)

	insertTasks(ctx, t, conn, backlogTasks, time.Now().UTC().Add(-time.Hour))
	for _, s := range trigger[:2] { // mark_dirty.sql, facts.sql
		for _, row := range explain(ctx, t, conn, s.sql, s.args(latest, maxSeq(ctx, t, conn))...) {
			if table, access := row["table"], row["type"]; !strings.HasPrefix(table, "<") && (access == "ALL" || access == "index") {
				t.Errorf("%s, new events %d%% of the ledger: %s read in full (%s access, %s rows)", s.name,
					100*backlogTasks/(backlogTasks+historyTasks+touchedTasks), table, access, row["rows"])
			}
		}
	}
}

// sqlStatements are the statements of the analytics app's SQL file dir/name (dir: sql or
// migrations), split as the app splits them.
func sqlStatements(t *testing.T, root, dir, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "analytics", dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return mysqlbinding.Statements(string(data))
}

// temporaryTables opens one session of the stack's MariaDB (its temporary tables and
// counters are its own) and gives it a temporary, empty copy of each table, which hides
// the real one from it alone: the analytics app keeps working on its own. exec runs a
// statement in that session and fails the test if it fails.
func temporaryTables(ctx context.Context, t *testing.T, st *stacktest.Stack, tables ...string) (*sql.Conn, func(q string, args ...any)) {
	t.Helper()
	conn, err := openDB(t, st).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%.80s: %v", q, err)
		}
	}
	for _, table := range tables {
		var name, ddl string
		if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+table).Scan(&name, &ddl); err != nil {
			t.Fatal(err)
		}
		exec(strings.Replace(ddl, "CREATE TABLE", "CREATE TEMPORARY TABLE", 1))
	}
	return conn, exec
}

// explain returns the plan of query: a row per table read, by column (table, type, rows...).
func explain(ctx context.Context, t *testing.T, conn *sql.Conn, query string, args ...any) []map[string]string {
	t.Helper()
	plan, err := queryStrings(ctx, conn, "EXPLAIN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) == 0 {
		t.Fatalf("EXPLAIN %.60s: no plan", query)
	}
	return plan
}

// statement is one statement of the trigger, named for reports, with what it takes of
// the ledger range.
type statement struct {
	name string
	sql  string
	args func(from, to int64) []any
}

// triggerStatements are the statements of a trigger over a ledger range, from the
// analytics app's SQL files and in its order: windows marked, facts, windows marked again,
// window statistics.
func triggerStatements(t *testing.T, root string) []statement {
	t.Helper()
	read := func(name string) []string { return sqlStatements(t, root, "sql", name) }
	ranged := func(from, to int64) []any { return []any{from, to} }
	none := func(int64, int64) []any { return nil }
	mark, facts := read("mark_dirty.sql"), read("facts.sql")
	if len(mark) != 1 || len(facts) != 1 {
		t.Fatalf("mark_dirty.sql has %d statements, facts.sql %d: want one each", len(mark), len(facts))
	}
	out := []statement{{"mark_dirty.sql", mark[0], ranged}, {"facts.sql", facts[0], ranged}, {"mark_dirty.sql", mark[0], ranged}}
	for i, s := range read("window_stats.sql") {
		out = append(out, statement{fmt.Sprintf("window_stats.sql #%d", i+1), s, none})
	}
	return out
}

// handlerReads is the session's count of rows its statements have read (every
// Handler_read_* counter).
func handlerReads(ctx context.Context, t *testing.T, conn *sql.Conn) int64 {
	t.Helper()
	rows, err := conn.QueryContext(ctx, "SHOW SESSION STATUS LIKE 'Handler_read%'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var sum int64
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return sum
}

// insertTasks adds the events of n completed tasks (accepted, started, completed, a
// second apart from each other and a second from the next task's) from at.
func insertTasks(ctx context.Context, t *testing.T, conn *sql.Conn, n int, at time.Time) {
	t.Helper()
	const chunk = 500
	for i := 0; i < n; i += chunk {
		var q strings.Builder
		q.WriteString("INSERT INTO events (id, kind, task_id, task_type, attempt, event_time) VALUES ")
		var args []any
		for j := i; j < min(n, i+chunk); j++ {
			id := uuid.NewString()
			for k, kind := range []string{"accepted", "started", "completed"} {
				if len(args) > 0 {
					q.WriteString(",")
				}
				q.WriteString("(?,?,?,'noop',?,?)")
				args = append(args, id+":"+kind, kind, id, min(k, 1), at.Add(time.Duration(j+k)*time.Second).Format("2006-01-02 15:04:05.000000"))
			}
		}
		if _, err := conn.ExecContext(ctx, q.String(), args...); err != nil {
			t.Fatal(err)
		}
	}
}

func maxSeq(ctx context.Context, t *testing.T, conn *sql.Conn) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
