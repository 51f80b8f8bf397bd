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
)

// scriptSQL is a fake of the SQL port: it answers the trigger's one query with marks and
// records every statement, failing the one whose text contains failOn.
type scriptSQL struct {
	last, max int64
	noState   bool
	failOn    string
	execs     []string
	params    [][]any
}

func (s *scriptSQL) Exec(_ context.Context, sql string, params ...any) error {
	if s.failOn != "" && strings.Contains(sql, s.failOn) {
		return errors.New("db down")
	}
	s.execs = append(s.execs, strings.Fields(sql)[0]+" "+strings.Fields(sql)[1]+" "+strings.Fields(sql)[2])
	s.params = append(s.params, params)
	return nil
}

func (s *scriptSQL) Query(_ context.Context, out any, _ string, _ ...any) error {
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
		{"windows fail: progress not recorded", &scriptSQL{last: 0, max: 5, failOn: "window_stats"}, 0, "window statistics", 3, false},
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
