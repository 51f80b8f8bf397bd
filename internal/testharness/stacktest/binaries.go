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

// buildBinaries builds the apps and the local broker once per test process (the Go
// build cache makes repeats cheap) and finds the Dapr binaries: TASKGRID_DAPR_BIN when
// set (make test sets it), else the pinned build in the cache, built when missing.
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

	out, err := os.MkdirTemp("", "taskgrid-bin-")
	binDir = out
	if err != nil {
		return b, fmt.Errorf("build binaries: %w", err)
	}
	pkgs := map[string]string{
		"gateway": "./apps/gateway", "worker": "./apps/worker", "storekeeper": "./apps/storekeeper",
		"analytics": "./analytics", "kafka-broker": "./deploy/kafka",
	}
	args := []string{"build", "-o", out + "/"}
	for _, p := range pkgs {
		args = append(args, p)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build: %w\n%s", err, msg)
	}
	b.apps = map[string]string{}
	for name, p := range pkgs {
		b.apps[name] = filepath.Join(out, filepath.Base(p))
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
