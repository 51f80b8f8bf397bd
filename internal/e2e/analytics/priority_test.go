package analytics

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// mariadbNice is the CPU priority deploy/scripts/mariadb.sh starts MariaDB at.
const mariadbNice = 10

// MariaDB does the analytics' batch work (a trigger's statements every TRIGGER_INTERVAL,
// most of a core for a fraction of a second at 500 tasks/s), which no task waits for: it
// runs at a lower CPU priority than the task path's processes, every thread of it, so
// that on a shared machine a trigger waits for the task path rather than delaying it.
func TestMariaDBYieldsToTheTaskPath(t *testing.T) {
	st := stacktest.Get(t)
	pid := st.Service("mariadb").PID()
	threads, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(threads) < 2 {
		t.Fatalf("threads of MariaDB (pid %d): %v, %v", pid, threads, err)
	}
	for _, f := range threads {
		nice, err := niceOf(f)
		if err != nil {
			t.Fatal(err)
		}
		if nice != mariadbNice {
			t.Errorf("%s: nice %d, want %d", f, nice, mariadbNice)
		}
	}
	if self, err := niceOf("/proc/self/stat"); err != nil || self == mariadbNice {
		t.Errorf("the test's own nice is %d (%v): it cannot tell MariaDB's apart", self, err)
	}
}

// niceOf reads the nice value of a process or thread from its stat file (field 19).
func niceOf(statFile string) (int, error) {
	data, err := os.ReadFile(statFile)
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(string(data), ") ") // the name may hold spaces and parentheses
	for ok && strings.Contains(rest, ") ") {
		_, rest, _ = strings.Cut(rest, ") ")
	}
	fields := strings.Fields(rest)
	if !ok || len(fields) < 17 {
		return 0, fmt.Errorf("%s: unexpected %q", statFile, data)
	}
	return strconv.Atoi(fields[16]) // fields from the state on: state is field 3, nice 19
}
