package steps

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Marks go to the file Open names, a line each, and nowhere before Open.
func TestMark(t *testing.T) {
	id := uuid.New()
	Mark(id, Accepted) // off: nothing to write to
	path := filepath.Join(t.TempDir(), "steps.log")
	if err := Open(""); err != nil {
		t.Fatal(err)
	}
	before := time.Now().UnixNano()
	if err := Open(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Swap(nil).Close() })
	Mark(id, Pushed)
	Mark(id, Received)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q, want the two marks after Open", lines)
	}
	for i, step := range []string{Pushed, Received} {
		f := strings.Fields(lines[i])
		if len(f) != 3 || f[0] != step || f[1] != id.String() {
			t.Fatalf("line %q, want %s %s <time>", lines[i], step, id)
		}
		if at, err := strconv.ParseInt(f[2], 10, 64); err != nil || at < before || at > time.Now().UnixNano() {
			t.Errorf("time %q: not a time of the mark", f[2])
		}
	}
}
