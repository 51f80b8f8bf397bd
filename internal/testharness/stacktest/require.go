package stacktest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"
)

// InCI reports whether CI=true: then a stack that cannot start fails the tests instead
// of skipping them.
func InCI() bool { return os.Getenv("CI") == "true" }

// Main starts one stack for a test package, runs its tests, and stops the stack. With
// -short, or when the stack cannot start outside CI, the tests run with Get skipping
// them; in CI a failed start exits non-zero.
func Main(m *testing.M, opts Options) { os.Exit(Run(m, opts)) }

// Run is Main without the exit: it returns the exit code, for a TestMain that cleans up
// after the stack.
func Run(m *testing.M, opts Options) int {
	code := run(m, opts)
	removeBinaries()
	return code
}

var (
	shared    *Stack
	sharedErr error
)

func run(m *testing.M, opts Options) int {
	flag.Parse()
	if testing.Short() {
		sharedErr = fmt.Errorf("integration test: skipped with -short")
		return m.Run()
	}
	opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	shared, sharedErr = Start(ctx, opts)
	cancel()
	if sharedErr != nil {
		fmt.Fprintf(os.Stderr, "stacktest: the stack did not start: %v\n", sharedErr)
		if shared != nil {
			fmt.Fprint(os.Stderr, shared.LogTail(30))
		}
		if InCI() {
			if shared != nil {
				keep := os.Getenv("TASKGRID_KEEP_STACK") != ""
				shared.Stop(keep)
				if keep {
					fmt.Fprintf(os.Stderr, "stacktest: kept %s\n", shared.Dir)
				}
			}
			return 1
		}
	}
	code := m.Run()
	if shared != nil {
		// TASKGRID_KEEP_STACK=1 keeps the directory (data, logs) of a failed run;
		// =always keeps it after a passing run too.
		flag := os.Getenv("TASKGRID_KEEP_STACK")
		keep := flag == "always" || (code != 0 && flag != "")
		if code != 0 {
			fmt.Fprint(os.Stderr, shared.LogTail(40))
		}
		shared.Stop(keep)
		if keep {
			fmt.Fprintf(os.Stderr, "stacktest: kept %s\n", shared.Dir)
		}
	}
	return code
}

// Get returns the package's shared stack. It skips the test when the stack was not
// started (-short, or no stack outside CI) and fails it in CI.
func Get(t testing.TB) *Stack {
	t.Helper()
	if sharedErr != nil {
		if InCI() && !testing.Short() {
			t.Fatalf("stack unavailable in CI: %v", sharedErr)
		}
		t.Skipf("stack unavailable: %v", sharedErr)
	}
	if shared == nil {
		t.Fatal("stacktest.Get called without stacktest.Main in TestMain")
	}
	return shared
}
