package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/mysqlbinding"
)

// Every migration file splits into statements, and the first creates the ledger.
func TestMigrationFiles(t *testing.T) {
	t.Parallel()
	text, err := migrations.ReadFile("migrations/001_events.sql")
	if err != nil {
		t.Fatal(err)
	}
	stmts := mysqlbinding.Statements(string(text))
	if len(stmts) < 5 || !slices.ContainsFunc(stmts, func(s string) bool { return len(s) > 30 && s[:30] == "CREATE TABLE IF NOT EXISTS eve" }) {
		t.Fatalf("001_events.sql gives %d statements: %q", len(stmts), stmts)
	}
}

func TestDecodeEntry(t *testing.T) {
	t.Parallel()
	ev := `{"id":"t:accepted:0","version":1,"kind":"accepted","time":"2026-01-01T00:00:00Z","task_id":"8b1c3f0e-6c55-4a43-9a7e-6d1f1b2c3d4e","task":"noop","attempt":0}`
	quoted, _ := json.Marshal(ev)
	pack, _ := json.Marshal(ev + "\n" + ev + "\n")
	for _, tt := range []struct {
		name, entry string
		want        int
	}{
		{"data as object", `{"id":"x","data":` + ev + `}`, 1},
		{"data as string", `{"id":"x","data":` + string(quoted) + `}`, 1},
		{"a pack of two", `{"id":"x","datacontenttype":"application/x-ndjson","data":` + string(pack) + `}`, 2},
		{"no data", `{"id":"x"}`, 0},
		{"not an event", `{"data":{"hello":"world"}}`, 0},
		{"not JSON", `nope`, 0},
	} {
		got, bad := events.DecodeEntry(json.RawMessage(tt.entry))
		if len(got) != tt.want || (tt.want == 0) != (len(bad) > 0) {
			t.Errorf("%s: %d events, errors %v; want %d", tt.name, len(got), bad, tt.want)
		}
		for _, e := range got {
			if e.Kind != "accepted" || e.Type != "noop" {
				t.Errorf("%s: decoded %+v", tt.name, e)
			}
		}
	}
}

// The window statistics split into their statements, each grain recomputed, and the
// dirty minutes forgotten last (only once every grain is written).
func TestWindowStatsStatements(t *testing.T) {
	t.Parallel()
	if len(windowStats) < 10 {
		t.Fatalf("window_stats.sql gives %d statements", len(windowStats))
	}
	for _, grain := range []string{"'minute'", "'hour'", "'day'", "'week'", "'month'"} {
		if !slices.ContainsFunc(windowStats, func(s string) bool {
			return strings.HasPrefix(s, "INSERT INTO window_stats") && strings.Contains(s, "SELECT "+grain)
		}) {
			t.Errorf("no statement fills the %s rows", grain)
		}
	}
	if last := windowStats[len(windowStats)-1]; last != "DELETE FROM stats_dirty" {
		t.Errorf("last statement = %q, want the dirty minutes forgotten", last)
	}
}
