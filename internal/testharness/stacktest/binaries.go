package stacktest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

type binaries struct {
	daprd, placement, scheduler, sentry string
	kafka                               string
	apps                                map[string]string // app id → binary
}

var (
	binDir    string // removed by removeBinaries when the test process ends
	buildOnce sync.Once
	built     binaries
	buildErr  error
)

// buildBinaries finds the apps and the local broker (see appBinaries) and the Dapr
// binaries: TASKGRID_DAPR_BIN when set (make test sets it), else the pinned build in the
// cache, built when missing.
func buildBinaries(ctx context.Context, root string) (binaries, error) {
	buildOnce.Do(func() { built, buildErr = build(ctx, root) })
	return built, buildErr
}

func build(ctx context.Context, root string) (binaries, error) {
	var b binaries
	daprBin := os.Getenv("TASKGRID_DAPR_BIN")
	if daprBin == "" {
		out, err := exec.CommandContext(ctx, filepath.Join(root, "deploy", "scripts", "install-dapr.sh")).Output()
		if err != nil {
			return b, fmt.Errorf("find the Dapr runtime (deploy/scripts/install-dapr.sh): %w", err)
		}
		daprBin = filepath.Join(strings.TrimSpace(string(out)), ".dapr", "bin")
	}
	b.daprd = filepath.Join(daprBin, "daprd")
	b.placement = filepath.Join(daprBin, "placement")
	b.scheduler = filepath.Join(daprBin, "scheduler")
	b.sentry = filepath.Join(daprBin, "sentry")
	for _, f := range []string{b.daprd, b.placement, b.scheduler, b.sentry} {
		if _, err := os.Stat(f); err != nil {
			return b, fmt.Errorf("dapr runtime: %w (run `make deps`)", err)
		}
	}

	pkgs := map[string]string{
		"gateway": "./apps/gateway", "worker": "./apps/worker", "storekeeper": "./apps/storekeeper",
		"analytics": "./analytics", "kafka-broker": "./deploy/kafka",
	}
	var err error
	if b.apps, err = appBinaries(ctx, root, pkgs); err != nil {
		return b, err
	}
	b.kafka = b.apps["kafka-broker"]
	delete(b.apps, "kafka-broker")
	return b, nil
}

func removeBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// AppBinEnv names a directory that holds the apps and the broker already built from this
// tree, each named as its key in build's list (gateway, worker, storekeeper, analytics,
// kafka-broker). make test and make bench set it to bin/, which they build first, so the
// dozen test processes that start stacks do not each link the same five binaries again
// (about 6 s a process on 2 cores). Unset, each test process builds them once.
const AppBinEnv = "TASKGRID_APP_BIN"

func appBinaries(ctx context.Context, root string, pkgs map[string]string) (map[string]string, error) {
	paths := map[string]string{}
	if dir := os.Getenv(AppBinEnv); dir != "" {
		for name := range pkgs {
			paths[name] = filepath.Join(dir, name)
			if _, err := os.Stat(paths[name]); err != nil {
				return nil, fmt.Errorf("%s=%s: %w", AppBinEnv, dir, err)
			}
		}
		return paths, nil
	}
	out, err := os.MkdirTemp("", "taskgrid-bin-")
	binDir = out
	if err != nil {
		return nil, fmt.Errorf("build binaries: %w", err)
	}
	args := []string{"build", "-o", out + "/"}
	for name, p := range pkgs {
		args = append(args, p)
		paths[name] = filepath.Join(out, filepath.Base(p))
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w\n%s", err, msg)
	}
	return paths, nil
}
