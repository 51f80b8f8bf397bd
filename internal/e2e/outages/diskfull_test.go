package outages

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// A full results disk: the storekeeper cannot write a single result file. Each worker
// keeps its result and sends it again: no task fails, none is computed again, no user is
// told anything. The node holds heldMax results with their slots free, then each slot
// waits with its own, and the tasks behind them wait in the queue. Once there is room,
// every task completes exactly once, from the result computed first.
func TestResultsDiskFull(t *testing.T) {
	st := stacktest.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	keeper, worker := st.App("storekeeper"), st.App("worker")
	smallResultsDisk(ctx, t, st, keeper)
	filler := fillDisk(t, st.ResultsRoot)

	failures := func() float64 {
		return stacktest.MustScrapeMetrics(t, keeper.BaseURL()).Sum("taskgrid_results_stored_total", `outcome="error"`)
	}
	heldResults := func() float64 {
		return stacktest.MustScrapeMetrics(t, worker.BaseURL()).Sum("taskgrid_worker_results_held")
	}
	before := failures()
	gw := st.Gateway()
	dir := "outages/diskfull"
	const (
		held    = heldMax + poolSize // results held: heldMax with their slots free, then one in each slot
		waiting = poolSize           // tasks behind them, in the queue or the node's buffer
	)
	var ids []string
	streams := map[string]*stream{}
	for i := range held + waiting {
		// Every other task is shorter than the worker waits before it records a start
		// itself: its start goes with its result, and is recorded at the result's first
		// failed store, so that it shows running too while the result is held.
		typ, payload := "sleep", map[string]any{"ms": 50}
		if i%2 == 1 {
			typ, payload = "noop", map[string]any{}
		}
		v, _, err := gw.SubmitRetrying(ctx, typ, payload, dir)
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		ids = append(ids, v.ID)
		streams[v.ID] = follow(ctx, gw, v.ID)
	}

	// Every result is held and refused again and again; nothing more is computed.
	deadline := time.Now().Add(30 * time.Second)
	for heldResults() < held || failures() < before+2*held {
		if time.Now().After(deadline) {
			t.Fatalf("%v results held and %v store failures in 30 s, want %d held, each refused twice at least", heldResults(), failures()-before, held)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	if got := heldResults(); got != held {
		t.Errorf("the worker holds %v results, want %d: a slot past HELD_RESULTS_MAX waits with its result", got, held)
	}
	running, pending := 0, 0
	for _, id := range ids {
		v, err := gw.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case v.Status == "running" && v.Attempts == 1:
			running++
		case v.Status == "pending" && v.Attempts == 0:
			pending++
		default:
			t.Errorf("task %s is %s after %d attempts while the disk is full: want running (its result held) or pending", id, v.Status, v.Attempts)
		}
	}
	if running != held || pending != waiting {
		t.Errorf("%d tasks running and %d pending, want %d (their results held) and %d", running, pending, held, waiting)
	}
	for id, s := range streams {
		s.mu.Lock()
		if s.completions > 0 || len(s.problems) > 0 {
			t.Errorf("stream of %s ended while the disk is full: %d completions; %v", id, s.completions, s.problems)
		}
		s.mu.Unlock()
	}

	// Room again: every task completes once, none computed twice.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	lastDone := checkCompletedOnce(ctx, t, st, dir, ids, streams)
	t.Logf("%v store failures while the disk was full; the last task done %s after there was room", failures()-before, lastDone.Sub(freed).Round(time.Millisecond))
	for _, id := range ids {
		v, err := gw.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if v.Attempts != 1 {
			t.Errorf("task %s took %d attempts, want 1: a held result is stored, not computed again", id, v.Attempts)
		}
	}
	if got := heldResults(); got != 0 {
		t.Errorf("the worker still holds %v results", got)
	}
}

// smallResultsDisk puts the stack's results directory on a file system of its own, a
// 1 MiB tmpfs, for the test: it stops keeper, mounts the tmpfs over the directory and
// starts keeper again on it. At the test's end keeper goes back to the directory as it
// was (the results written meanwhile go with the tmpfs).
func smallResultsDisk(ctx context.Context, t *testing.T, st *stacktest.Stack, keeper *stacktest.Instance) {
	t.Helper()
	if os.Geteuid() != 0 && !stacktest.InCI() {
		t.Skip("mounting a tmpfs needs root (in CI the test fails without it)")
	}
	keeper.Stop()
	if err := unix.Mount("tmpfs", st.ResultsRoot, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
		if err := keeper.Start(ctx); err != nil {
			t.Errorf("start the storekeeper again: %v", err)
		}
		t.Fatalf("mount a tmpfs on %s (the test needs root): %v", st.ResultsRoot, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		keeper.Stop()
		if err := unix.Unmount(st.ResultsRoot, 0); err != nil {
			t.Errorf("unmount %s: %v", st.ResultsRoot, err)
			_ = unix.Unmount(st.ResultsRoot, unix.MNT_DETACH)
		}
		if err := keeper.Start(ctx); err != nil {
			t.Errorf("start the storekeeper again: %v", err)
		}
	})
	if err := keeper.Start(ctx); err != nil {
		t.Fatalf("start the storekeeper on the tmpfs: %v", err)
	}
}

// fillDisk fills the file system of dir with one file until it refuses to take more,
// checks that it refuses even a small new file, and returns the file's path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	if cerr := f.Close(); !errors.Is(err, unix.ENOSPC) || cerr != nil {
		t.Fatalf("fill %s: %v, %v; want no space left", dir, err, cerr)
	}
	err = os.WriteFile(filepath.Join(dir, "probe"), []byte("{}"), 0o644)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("a small file on the full disk: %v, want no space left", err)
	}
	_ = os.Remove(filepath.Join(dir, "probe"))
	return path
}
