package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
)

// scriptSQL is a fake of the SQL port: it answers the trigger's one query with marks and
// records every statement, failing the one whose text contains failOn.
type scriptSQL struct {
	last, max int64
	noState   bool
	failOn    string
	execs     []string // each statement's first three words
	sqls      []string // each statement
	params    [][]any
	due       []string // windows the query of stats_dirty_percentiles answers, "grain start"
	dueArgs   []any    // what that query was given
}

func (s *scriptSQL) Exec(_ context.Context, sql string, params ...any) error {
	if s.failOn != "" && strings.Contains(sql, s.failOn) {
		return errors.New("db down")
	}
	s.execs = append(s.execs, strings.Fields(sql)[0]+" "+strings.Fields(sql)[1]+" "+strings.Fields(sql)[2])
	s.sqls = append(s.sqls, sql)
	s.params = append(s.params, params)
	return nil
}

func (s *scriptSQL) Query(_ context.Context, out any, sql string, params ...any) error {
	if strings.Contains(sql, "stats_dirty_percentiles") {
		s.dueArgs = params
		rows := []map[string]string{}
		for _, d := range s.due {
			grain, start, _ := strings.Cut(d, " ")
			rows = append(rows, map[string]string{"grain": grain, "window_start": start})
		}
		data, _ := json.Marshal(rows)
		return json.Unmarshal(data, out)
	}
	rows := []map[string]int64{{"last_seq": s.last, "max_seq": s.max}}
	if s.noState {
		rows = nil
	}
	data, _ := json.Marshal(rows)
	return json.Unmarshal(data, out)
}

// The trigger's steps and their order, what it skips when nothing is new, the
// compare-and-set of its progress, and where a failure stops it (before recording
// progress, so the next trigger redoes the work).
func TestTriggerSteps(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	stats := len(windowStats)
	tests := []struct {
		name      string
		db        *scriptSQL
		wantN     int
		wantErr   string
		wantExecs int // statements run
		wantCAS   bool
	}{
		{"new events: facts, windows, progress, sample", &scriptSQL{last: 10, max: 25}, 15, "", 5 + stats, true},
		{"nothing new: only the pending sample", &scriptSQL{last: 25, max: 25}, 0, "", 1, false},
		{"facts fail: progress not recorded", &scriptSQL{last: 0, max: 5, failOn: "task_facts\n"}, 0, "task facts", 1, false},
		{"windows fail: progress not recorded", &scriptSQL{last: 0, max: 5, failOn: "window_stats"}, 0, "window statistics", 4, false},
		{"no trigger state: migrations not applied", &scriptSQL{noState: true}, 0, "no trigger state", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, err := Ledger{DB: tt.db}.Trigger(t.Context(), now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			} else if err != nil || n != tt.wantN {
				t.Fatalf("Trigger = %d, %v; want %d", n, err, tt.wantN)
			}
			if len(tt.db.execs) != tt.wantExecs {
				t.Errorf("%d statements %v, want %d", len(tt.db.execs), tt.db.execs, tt.wantExecs)
			}
			cas := slices.IndexFunc(tt.db.execs, func(s string) bool { return strings.HasPrefix(s, "UPDATE trigger_state") })
			if (cas >= 0) != tt.wantCAS {
				t.Fatalf("progress recorded: %v, want %v (%v)", cas >= 0, tt.wantCAS, tt.db.execs)
			}
			if tt.wantCAS {
				if p := tt.db.params[cas]; len(p) != 2 || fmt.Sprint(p...) != fmt.Sprint(tt.db.max, " ", tt.db.last) {
					t.Errorf("progress set with %v, want [%d %d] (new, expected old)", p, tt.db.max, tt.db.last)
				}
				if cas != len(tt.db.execs)-2 {
					t.Errorf("progress recorded at step %d of %v: want after every statistic", cas, tt.db.execs)
				}
			}
			if tt.wantErr == "" && !strings.HasPrefix(tt.db.execs[len(tt.db.execs)-1], "INSERT IGNORE INTO") {
				t.Errorf("last statement %q, want the pending sample", tt.db.execs[len(tt.db.execs)-1])
			}
		})
	}
}

// Every trigger, new events or not, recomputes the percentiles of the windows that are
// due, by grain (minutes first: their statements write the histograms the hours are
// merged from, and mark those hours again) with its windows, then forgets them; with none
// due, it runs nothing more. A running window is due once dirty for PercentilesEvery,
// which the query is given.
func TestTriggerPercentiles(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	const m1, m2, h1 = "minute 2026-12-04T09:58:00", "minute 2026-12-04T09:59:00", "hour 2026-12-04T09:00:00"
	const minutes, hour = "[2026-12-04T09:58:00 2026-12-04T09:59:00]", "[2026-12-04T09:00:00]"
	for _, tt := range []struct {
		name string
		db   *scriptSQL
		want []string // statements after the pending sample, with their parameters
	}{
		{"none due", &scriptSQL{last: 25, max: 25}, nil},
		{"minutes and an hour, nothing new", &scriptSQL{last: 25, max: 25, due: []string{h1, m1, m2}}, []string{
			"UPDATE window_stats w " + minutes, "DELETE FROM window_hist " + minutes, "INSERT INTO window_hist " + minutes,
			"INSERT IGNORE INTO " + minutes, "DELETE FROM stats_dirty_percentiles " + minutes,
			"UPDATE window_stats w " + hour, "DELETE FROM stats_dirty_percentiles " + hour,
		}},
		{"an hour, after new events", &scriptSQL{last: 10, max: 25, due: []string{h1}}, []string{
			"UPDATE window_stats w " + hour, "DELETE FROM stats_dirty_percentiles " + hour,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := (Ledger{DB: tt.db, PercentilesEvery: time.Minute}).Trigger(t.Context(), now); err != nil {
				t.Fatal(err)
			}
			if len(tt.db.dueArgs) != 1 || tt.db.dueArgs[0] != time.Minute.Microseconds() {
				t.Errorf("windows due asked with %v, want [%d] (µs)", tt.db.dueArgs, time.Minute.Microseconds())
			}
			sample := slices.IndexFunc(tt.db.sqls, func(s string) bool { return strings.Contains(s, "INTO pending_samples") })
			if sample < 0 {
				t.Fatal("no pending sample")
			}
			var got []string
			for k, e := range tt.db.execs[sample+1:] {
				got = append(got, fmt.Sprint(e, " ", tt.db.params[sample+1+k]))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("after the sample:\n%q\nwant\n%q", got, tt.want)
			}
			for k, s := range tt.db.sqls[sample+1:] {
				if n := strings.Count(s, "?"); n != len(tt.db.params[sample+1+k]) {
					t.Errorf("%d placeholders for %d windows in %.120q", n, len(tt.db.params[sample+1+k]), s)
				}
			}
		})
	}
	// Each statement has one list to widen; a minute's percentiles come from its tasks'
	// facts, an hour's from its minutes' histograms, never from the hour's facts.
	for grain, stmts := range percentileStatements {
		for _, stmt := range stmts {
			if strings.Count(stmt, "IN (?)") != 1 {
				t.Errorf("percentiles_%s.sql: want one IN (?) to widen in %.80q", grain, stmt)
			}
		}
		first := stmts[0]
		if !strings.HasPrefix(first, "UPDATE window_stats w") || strings.Count(first, "'"+grain+"'") != 2 ||
			!strings.Contains(first, "INTERVAL 1 "+strings.ToUpper(grain)) {
			t.Errorf("percentiles_%s.sql: want an UPDATE of %s rows first, got %.120q", grain, grain, first)
		}
	}
	if m, h := percentileStatements["minute"], percentileStatements["hour"]; len(m) != 4 || len(h) != 1 ||
		!strings.Contains(m[0], "JOIN task_facts") || strings.Contains(h[0], "task_facts") || !strings.Contains(h[0], "JOIN window_hist") {
		t.Errorf("want minutes from task_facts (4 statements) and hours from window_hist alone (1), got %d and %d", len(m), len(h))
	}
}

// Insert writes a statement per insertMax events, every event once, in order.
func TestLedgerInsertChunks(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, insertMax, insertMax + 1, 2*insertMax + 3} {
		evs := make([]events.Event, n)
		for i := range evs {
			evs[i] = events.Event{ID: fmt.Sprintf("e%d", i), Kind: events.KindAccepted, TaskID: uuid.New()}
		}
		db := &scriptSQL{}
		if err := (Ledger{DB: db}).Insert(t.Context(), evs); err != nil {
			t.Fatalf("%d events: %v", n, err)
		}
		want := (n + insertMax - 1) / insertMax
		var ids []string
		for _, p := range db.params {
			if len(p)%8 != 0 || len(p)/8 > insertMax {
				t.Fatalf("%d events: a statement with %d parameters", n, len(p))
			}
			for j := 0; j < len(p); j += 8 {
				ids = append(ids, p[j].(string))
			}
		}
		if len(db.execs) != want || len(ids) != n || (n > 0 && (ids[0] != "e0" || ids[n-1] != evs[n-1].ID)) {
			t.Errorf("%d events: %d statements carrying %d events, want %d carrying all in order", n, len(db.execs), len(ids), want)
		}
	}
	db := &scriptSQL{failOn: "INSERT"}
	if err := (Ledger{DB: db}).Insert(t.Context(), make([]events.Event, 3)); err == nil {
		t.Error("a failed statement: nil error")
	}
}
