package main

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/mysqlbinding"
)

// mysqlTime is the DATETIME(6) text of t in UTC.
func mysqlTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") }

// SQL runs parameterised statements (mysqlbinding.DB does, through the sidecar).
type SQL interface {
	Exec(ctx context.Context, sql string, params ...any) error
	Query(ctx context.Context, out any, sql string, params ...any) error
}

// Ledger is the analytics data in MySQL: the event ledger and what the trigger derives
// from it.
type Ledger struct {
	DB SQL
	// PercentilesEvery is how often the percentiles of a running minute or hour window
	// are recomputed (an ended window's are, once, at the next trigger). 0: at every
	// trigger.
	PercentilesEvery time.Duration
}

// insertMax bounds the events of one INSERT: 8 parameters each, well under MySQL's
// 65,535 placeholders and its packet size. A delivery of packs can carry many more.
const insertMax = 2000

// Insert adds events to the ledger, a statement per insertMax of them. An event already
// there (same id) is ignored: redelivery and republishing change nothing, so a failure
// after some statements leaves nothing that a retry of the whole would not mend.
func (l Ledger) Insert(ctx context.Context, evs []events.Event) error {
	for len(evs) > 0 {
		chunk := evs[:min(len(evs), insertMax)]
		evs = evs[len(chunk):]
		if err := l.insert(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

func (l Ledger) insert(ctx context.Context, evs []events.Event) error {
	var q strings.Builder
	q.WriteString("INSERT IGNORE INTO events (id, kind, task_id, task_type, attempt, priority, worker, event_time) VALUES ")
	params := make([]any, 0, 8*len(evs))
	for i, e := range evs {
		if i > 0 {
			q.WriteString(",")
		}
		q.WriteString("(?,?,?,?,?,?,?,?)")
		params = append(params, e.ID, e.Kind, e.TaskID.String(), e.Type, e.Attempt, string(e.Priority), e.Worker, mysqlTime(e.Time))
	}
	if err := l.DB.Exec(ctx, q.String(), params...); err != nil {
		return fmt.Errorf("insert %d events: %w", len(evs), err)
	}
	return nil
}

//go:embed sql/window_stats.sql
var windowStatsSQL string

//go:embed sql/percentiles_minute.sql
var percentilesMinuteSQL string

//go:embed sql/percentiles_hour.sql
var percentilesHourSQL string

// percentileStatements recompute the percentiles of some windows, by grain, in order:
// each has one "IN (?)" that the trigger widens to the windows. A minute's come from its
// tasks' facts and write its histogram; an hour's are merged from its minutes'
// histograms (migration 006).
var percentileStatements = map[string][]string{
	"minute": mysqlbinding.Statements(percentilesMinuteSQL),
	"hour":   mysqlbinding.Statements(percentilesHourSQL),
}

// windowStats are the statements that recompute the statistics of the dirty minutes.
var windowStats = mysqlbinding.Statements(windowStatsSQL)

// markDirty records, as needing their statistics recomputed, the minutes that the facts
// of the tasks with events in a ledger range fall in; facts recomputes those tasks' facts
// (both take the range's bounds: seq > ? AND seq <= ?).
var (
	markDirty = one(markDirtySQL)
	facts     = one(factsSQL)
)

//go:embed sql/mark_dirty.sql
var markDirtySQL string

//go:embed sql/facts.sql
var factsSQL string

// one is the single statement of a SQL file.
func one(text string) string {
	stmts := mysqlbinding.Statements(text)
	if len(stmts) != 1 {
		panic(fmt.Sprintf("want one statement, got %d", len(stmts)))
	}
	return stmts[0]
}

// Trigger runs one micro-batch: it recomputes the facts of every task with events that
// arrived since the last trigger, straight from the ledger (so late, repeated or
// out-of-order events land where they belong), then the statistics of every window
// those tasks were in before or are in now (window_stats), records how far it got, and
// samples the number of pending tasks. It reports how many new events it saw. Run again
// after a failure or a crash, it redoes the same work with the same result: the dirty
// minutes are kept in a table until their statistics are written.
func (l Ledger) Trigger(ctx context.Context, now time.Time) (int, error) {
	var marks []struct {
		Last mysqlbinding.Int `json:"last_seq"`
		Max  mysqlbinding.Int `json:"max_seq"`
	}
	if err := l.DB.Query(ctx, &marks, `SELECT (SELECT last_seq FROM trigger_state WHERE name = 'task_facts') AS last_seq,
  (SELECT COALESCE(MAX(seq), 0) FROM events) AS max_seq`); err != nil {
		return 0, fmt.Errorf("trigger: %w", err)
	}
	if len(marks) != 1 {
		return 0, fmt.Errorf("trigger: no trigger state (migrations not applied?)")
	}
	last, upto := marks[0].Last, marks[0].Max
	if upto > last {
		if err := l.DB.Exec(ctx, markDirty, last, upto); err != nil {
			return 0, fmt.Errorf("trigger: mark windows: %w", err)
		}
		if err := l.DB.Exec(ctx, facts, last, upto); err != nil {
			return 0, fmt.Errorf("trigger: task facts: %w", err)
		}
		if err := l.DB.Exec(ctx, markDirty, last, upto); err != nil {
			return 0, fmt.Errorf("trigger: mark windows: %w", err)
		}
		for _, stmt := range windowStats {
			if err := l.DB.Exec(ctx, stmt); err != nil {
				return 0, fmt.Errorf("trigger: window statistics: %w", err)
			}
		}
		if err := l.DB.Exec(ctx, "UPDATE trigger_state SET last_seq = ? WHERE name = 'task_facts' AND last_seq = ?", upto, last); err != nil {
			return 0, fmt.Errorf("trigger: record progress: %w", err)
		}
	}
	if err := l.DB.Exec(ctx, `INSERT IGNORE INTO pending_samples (sampled_at, pending)
SELECT ?, COUNT(*) FROM task_facts WHERE accepted_at IS NOT NULL AND first_started_at IS NULL AND completed_at IS NULL AND failed_at IS NULL AND cancelled_at IS NULL`, mysqlTime(now)); err != nil {
		return 0, fmt.Errorf("trigger: pending sample: %w", err)
	}
	// At every trigger, new events or not: a running hour's turn comes with time.
	if err := l.percentiles(ctx); err != nil {
		return int(upto - last), err
	}
	return int(upto - last), nil
}

// percentilesBatch bounds the windows one trigger recomputes (a backlog after an outage
// is worked off over the next triggers).
const percentilesBatch = 120

// percentiles recomputes the percentiles of the minute and hour windows that are due:
// those that have ended, and those dirty for PercentilesEvery; then forgets them. The
// rest of a window's row is exact at every trigger; a running hour's percentiles are at
// most PercentilesEvery (and a trigger) old, a minute's appear a trigger after it ends.
// Minutes go first: an hour's percentiles are merged from its minutes' histograms, which
// a minute's recompute writes (and marks its hour again, for the hours not due yet).
func (l Ledger) percentiles(ctx context.Context) error {
	var due []struct {
		Grain string `json:"grain"`
		Start string `json:"window_start"`
	}
	if err := l.DB.Query(ctx, &due, `SELECT grain, DATE_FORMAT(window_start, '%Y-%m-%d %H:%i:%s') AS window_start
FROM stats_dirty_percentiles
WHERE (grain = 'minute' AND window_start + INTERVAL 1 MINUTE <= UTC_TIMESTAMP())
  OR (grain = 'hour' AND window_start + INTERVAL 1 HOUR <= UTC_TIMESTAMP())
  OR since <= UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND
ORDER BY grain DESC, window_start LIMIT `+strconv.Itoa(percentilesBatch), l.PercentilesEvery.Microseconds()); err != nil {
		return fmt.Errorf("trigger: windows due: %w", err)
	}
	for _, grain := range []string{"minute", "hour"} {
		var starts []any
		for _, d := range due {
			if d.Grain == grain {
				starts = append(starts, d.Start)
			}
		}
		if len(starts) == 0 {
			continue
		}
		in := "IN (?" + strings.Repeat(",?", len(starts)-1) + ")"
		for _, stmt := range percentileStatements[grain] {
			if err := l.DB.Exec(ctx, strings.Replace(stmt, "IN (?)", in, 1), starts...); err != nil {
				return fmt.Errorf("trigger: %s percentiles: %w", grain, err)
			}
		}
		if err := l.DB.Exec(ctx, "DELETE FROM stats_dirty_percentiles WHERE grain = '"+grain+"' AND window_start "+in, starts...); err != nil {
			return fmt.Errorf("trigger: forget %s windows: %w", grain, err)
		}
	}
	return nil
}
