package mysqlbinding

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestInt(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want Int
		ok   bool
	}{{`42`, 42, true}, {`"42"`, 42, true}, {`null`, 0, true}, {`"x"`, 0, false}, {`1.5`, 0, false}} {
		var n Int
		err := json.Unmarshal([]byte(tt.in), &n)
		if (err == nil) != tt.ok || n != tt.want {
			t.Errorf("Int(%s) = %d, %v; want %d, ok=%v", tt.in, n, err, tt.want, tt.ok)
		}
	}
}

func TestStatements(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, text string
		want       []string
	}{
		{"comments dropped, split at line ends", "-- a comment\nCREATE TABLE a (\n  x INT\n);\n\n-- another\nINSERT IGNORE INTO a VALUES (1);\nSELECT 1",
			[]string{"CREATE TABLE a (\n  x INT\n)", "INSERT IGNORE INTO a VALUES (1)", "SELECT 1"}},
		{"a semicolon inside a line does not split", "SELECT ';' AS x; -- no\nSELECT 2;", []string{"SELECT ';' AS x; -- no\nSELECT 2"}},
		{"nothing but comments", "-- only\n\n", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Statements(tt.text); !slices.Equal(got, tt.want) {
				t.Fatalf("Statements = %q, want %q", got, tt.want)
			}
		})
	}
}
