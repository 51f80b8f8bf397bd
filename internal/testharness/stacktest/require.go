package stacktest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// InCI reports whether CI=true: then a stack that cannot start fails the tests instead
// of skipping them.
func InCI() bool { return os.Getenv("CI") == "true" }

// Main runs a test package whose tests share one stack, and stops the stack at the end.
// The stack starts at the first Get, so a run that selects none of the package's tests
// (go test -run ...) starts none. With -short, or when the stack cannot start outside CI,
// Get skips the tests; in CI it fails them.
func Main(m *testing.M, opts Options) { os.Exit(Run(m, opts)) }

// Run is Main without the exit: it returns the exit code, for a TestMain that cleans up
// after the stack.
func Run(m *testing.M, opts Options) int {
	code := run(m, opts)
	removeBinaries()
	return code
}

var (
	mainOpts  *Options // set by Run: Get may start the stack
	startOnce sync.Once
	shared    *Stack
	sharedErr error
)

func run(m *testing.M, opts Options) int {
	flag.Parse()
	if testing.Short() {
		sharedErr = fmt.Errorf("integration test: skipped with -short")
		return m.Run()
	}
	mainOpts = &opts
	code := m.Run()
	if shared != nil {
		if code != 0 {
			fmt.Fprint(os.Stderr, shared.LogTail(40))
		}
		stopShared(code != 0)
	}
	return code
}

// startShared starts the package's stack, once. A stack that fails to start is stopped
// at once, and sharedErr says why.
func startShared() {
	opts := *mainOpts
	opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	shared, sharedErr = Start(ctx, opts)
	if sharedErr == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "stacktest: the stack did not start: %v\n", sharedErr)
	if shared != nil {
		fmt.Fprint(os.Stderr, shared.LogTail(30))
		stopShared(true)
		shared = nil
	}
}

// stopShared stops the shared stack. TASKGRID_KEEP_STACK=1 keeps its directory (data,
// logs) when failed is set; =always keeps it after a passing run too.
func stopShared(failed bool) {
	flag := os.Getenv("TASKGRID_KEEP_STACK")
	keep := flag == "always" || (failed && flag != "")
	shared.Stop(keep)
	if keep {
		fmt.Fprintf(os.Stderr, "stacktest: kept %s\n", shared.Dir)
	}
}

// Get returns the package's shared stack, starting it at the first call. It skips the
// test when the stack cannot start (-short, or no stack outside CI) and fails it in CI.
func Get(t testing.TB) *Stack {
	t.Helper()
	if mainOpts == nil && sharedErr == nil {
		t.Fatal("stacktest.Get called without stacktest.Main in TestMain")
	}
	if mainOpts != nil {
		startOnce.Do(startShared)
	}
	if sharedErr != nil {
		if InCI() && !testing.Short() {
			t.Fatalf("stack unavailable in CI: %v", sharedErr)
		}
		t.Skipf("stack unavailable: %v", sharedErr)
	}
	return shared
}
