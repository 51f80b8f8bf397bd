package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// profileStack takes a CPU profile of every app and every daprd of the stack at once,
// for seconds, starting after delay, and writes each to dir/<scenario>-<instance>[-daprd].pprof
// (read with `go tool pprof`), and one of the bench's own process (its clients) to
// dir/<scenario>-bench.pprof. It runs in the background of a scenario and returns at
// once; wait on the returned func for the files. Failures are logged, not returned: a
// profile is an aid for reading the figures, not one of them.
func profileStack(ctx context.Context, e *Env, scenario string, delay, seconds time.Duration) (wait func()) {
	dir := e.Config.ProfileDir
	if dir == "" || e.Stack == nil {
		return func() {}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			e.Logf("bench: profile: %v", err)
			return
		}
		var each sync.WaitGroup
		each.Go(func() {
			if err := profileSelf(ctx, seconds, filepath.Join(dir, scenario+"-bench.pprof")); err != nil {
				e.Logf("bench: profile of the bench: %v", err)
			}
		})
		for _, id := range stacktest.AllApps {
			for _, in := range e.Stack.Apps(id) {
				for _, sidecar := range []bool{false, true} {
					name := scenario + "-" + in.Name
					if sidecar {
						name += "-daprd"
					}
					each.Go(func() {
						if err := fetchProfile(ctx, in.ProfileURL(sidecar), seconds, filepath.Join(dir, name+".pprof")); err != nil {
							e.Logf("bench: profile %s: %v", name, err)
						}
					})
				}
			}
		}
		each.Wait()
		e.Logf("bench: CPU profiles of %s written to %s", scenario, dir)
	})
	return wg.Wait
}

// profileSelf writes a CPU profile of this process, for d, to path.
func profileSelf(ctx context.Context, d time.Duration, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	pprof.StopCPUProfile()
	return f.Close()
}

func fetchProfile(ctx context.Context, base string, d time.Duration, path string) error {
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
