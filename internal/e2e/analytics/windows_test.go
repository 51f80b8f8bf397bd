package analytics

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// windowRow is one row of window_stats (the fields checked).
type windowRow struct {
	Accepted, Started, Completed, Failed, FinishedStarts, Retries, Timed int
	WaitMax, RunMax, E2EMax                                              float64
	WaitP50, RunP50, E2EP50                                              float64 // NaN when not kept
}

// windowKey names a row: grain, window start (UTC), task type.
type windowKey struct {
	Grain, Start, Type string
}

var grains = []string{"minute", "hour", "day", "week", "month"}

// windowStart is the start of t's window of grain, as window_stats writes it.
func windowStart(grain string, t time.Time) string {
	t = t.UTC()
	switch grain {
	case "minute":
		t = t.Truncate(time.Minute)
	case "hour":
		t = t.Truncate(time.Hour)
	case "day":
		t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	case "week":
		t = time.Date(t.Year(), t.Month(), t.Day()-(int(t.Weekday())+6)%7, 0, 0, 0, 0, time.UTC)
	case "month":
		t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return t.Format(time.DateTime)
}

// percentileCont is MariaDB's PERCENTILE_CONT: linear interpolation between ranks.
func percentileCont(vs []float64, p float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	pos := p * float64(len(s)-1)
	lo := int(math.Floor(pos))
	if lo+1 >= len(s) {
		return s[lo]
	}
	return s[lo] + (pos-float64(lo))*(s[lo+1]-s[lo])
}

// expectedWindows computes window_stats from task_facts, independently of the SQL that
// maintains it.
func expectedWindows(ctx context.Context, db *sql.DB) (map[windowKey]windowRow, error) {
	rows, err := db.QueryContext(ctx, `SELECT task_type, accepted_at, first_started_at, last_started_at, completed_at, failed_at, starts, failed_attempts FROM task_facts`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[windowKey]windowRow{}
	type durs struct{ wait, run, e2e []float64 }
	samples := map[windowKey]*durs{}
	for rows.Next() {
		var typ string
		var accepted, first, last, completed, failed sql.NullTime
		var starts, failedAttempts int
		if err := rows.Scan(&typ, &accepted, &first, &last, &completed, &failed, &starts, &failedAttempts); err != nil {
			return nil, err
		}
		for _, g := range grains {
			add := func(at sql.NullTime, f func(*windowRow)) {
				if at.Valid {
					k := windowKey{g, windowStart(g, at.Time), typ}
					r := out[k]
					f(&r)
					out[k] = r
				}
			}
			add(accepted, func(r *windowRow) { r.Accepted++ })
			add(first, func(r *windowRow) { r.Started++ })
			add(failed, func(r *windowRow) { r.Failed++; r.FinishedStarts += starts; r.Retries += failedAttempts })
			add(completed, func(r *windowRow) {
				r.Completed++
				r.FinishedStarts += starts
				r.Retries += failedAttempts
				if !accepted.Valid || !first.Valid || !last.Valid {
					return
				}
				r.Timed++
				wait, run, e2e := first.Time.Sub(accepted.Time).Seconds(), completed.Time.Sub(last.Time).Seconds(), completed.Time.Sub(accepted.Time).Seconds()
				r.WaitMax, r.RunMax, r.E2EMax = max(r.WaitMax, wait), max(r.RunMax, run), max(r.E2EMax, e2e)
				k := windowKey{g, windowStart(g, completed.Time), typ}
				if samples[k] == nil {
					samples[k] = &durs{}
				}
				s := samples[k]
				s.wait, s.run, s.e2e = append(s.wait, wait), append(s.run, run), append(s.e2e, e2e)
			})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for k, r := range out {
		r.WaitP50, r.RunP50, r.E2EP50 = math.NaN(), math.NaN(), math.NaN()
		if s := samples[k]; s != nil && (k.Grain == "minute" || k.Grain == "hour") {
			r.WaitP50, r.RunP50, r.E2EP50 = percentileCont(s.wait, 0.5), percentileCont(s.run, 0.5), percentileCont(s.e2e, 0.5)
		}
		out[k] = r
	}
	return out, nil
}

func storedWindows(ctx context.Context, db *sql.DB) (map[windowKey]windowRow, error) {
	rows, err := db.QueryContext(ctx, `SELECT grain, window_start, task_type, accepted, started, completed, failed, finished_starts, retries, timed,
  COALESCE(wait_max, 0), COALESCE(run_max, 0), COALESCE(e2e_max, 0), wait_p50, run_p50, e2e_p50 FROM window_stats`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[windowKey]windowRow{}
	for rows.Next() {
		var k windowKey
		var start time.Time
		var r windowRow
		var wp, rp, ep sql.NullFloat64
		if err := rows.Scan(&k.Grain, &start, &k.Type, &r.Accepted, &r.Started, &r.Completed, &r.Failed, &r.FinishedStarts, &r.Retries, &r.Timed,
			&r.WaitMax, &r.RunMax, &r.E2EMax, &wp, &rp, &ep); err != nil {
			return nil, err
		}
		k.Start = start.UTC().Format(time.DateTime)
		nan := func(v sql.NullFloat64) float64 {
			if v.Valid {
				return v.Float64
			}
			return math.NaN()
		}
		r.WaitP50, r.RunP50, r.E2EP50 = nan(wp), nan(rp), nan(ep)
		out[k] = r
	}
	return out, rows.Err()
}

// sameRow compares two rows of a grain, durations to a microsecond (the precision of the
// times); an hour's percentiles, merged from its minutes' histograms, to histTolerance.
func sameRow(grain string, a, b windowRow) bool {
	close := func(x, y float64) bool { return math.IsNaN(x) && math.IsNaN(y) || math.Abs(x-y) < 2e-6 }
	closeP := close
	if grain == "hour" {
		closeP = func(x, y float64) bool { return math.IsNaN(x) && math.IsNaN(y) || closeToHist(x, y) }
	}
	return a.Accepted == b.Accepted && a.Started == b.Started && a.Completed == b.Completed && a.Failed == b.Failed &&
		a.FinishedStarts == b.FinishedStarts && a.Retries == b.Retries && a.Timed == b.Timed &&
		close(a.WaitMax, b.WaitMax) && close(a.RunMax, b.RunMax) && close(a.E2EMax, b.E2EMax) &&
		closeP(a.WaitP50, b.WaitP50) && closeP(a.RunP50, b.RunP50) && closeP(a.E2EP50, b.E2EP50)
}

// diffWindows describes how stored differs from want; "" when they agree.
func diffWindows(want, stored map[windowKey]windowRow) string {
	var lines []string
	for k, w := range want {
		if s, ok := stored[k]; !ok {
			lines = append(lines, fmt.Sprintf("missing %v: want %+v", k, w))
		} else if !sameRow(k.Grain, w, s) {
			lines = append(lines, fmt.Sprintf("%v: stored %+v, want %+v", k, s, w))
		}
	}
	for k, s := range stored {
		if _, ok := want[k]; !ok {
			lines = append(lines, fmt.Sprintf("extra %v: %+v", k, s))
		}
	}
	sort.Strings(lines)
	if len(lines) > 10 {
		lines = append(lines[:10], fmt.Sprintf("... and %d more", len(lines)-10))
	}
	return strings.Join(lines, "\n")
}

// checkWindows waits until window_stats agrees, for every grain, window and task type,
// with what task_facts says (computed here in Go), and fails with the difference if it
// never does.
func checkWindows(ctx context.Context, t *testing.T, db *sql.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var diff string
	for {
		want, err := expectedWindows(ctx, db)
		if err == nil {
			var stored map[windowKey]windowRow
			if stored, err = storedWindows(ctx, db); err == nil {
				if diff = diffWindows(want, stored); diff == "" && len(want) > 0 {
					return
				}
			}
		}
		if err != nil {
			diff = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("window_stats does not agree with task_facts:\n%s", diff)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func TestWindowStartAndPercentile(t *testing.T) {
	at := time.Date(2026, 12, 2, 6, 45, 30, 123, time.UTC) // a Wednesday
	for grain, want := range map[string]string{
		"minute": "2026-12-02 06:45:00", "hour": "2026-12-02 06:00:00", "day": "2026-12-02 00:00:00",
		"week": "2026-11-30 00:00:00", "month": "2026-12-01 00:00:00",
	} {
		if got := windowStart(grain, at); got != want {
			t.Errorf("windowStart(%s) = %s, want %s", grain, got, want)
		}
	}
	if got := windowStart("week", time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)); got != "2026-11-30 00:00:00" {
		t.Errorf("a Monday's week = %s", got)
	}
	if got := percentileCont([]float64{4, 1, 3, 2}, 0.5); got != 2.5 {
		t.Errorf("p50 of 1..4 = %v, want 2.5", got)
	}
	if got := percentileCont([]float64{7}, 0.95); got != 7 {
		t.Errorf("p95 of one value = %v", got)
	}
}
