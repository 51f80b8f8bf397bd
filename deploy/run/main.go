// Command run runs the apps of a Dapr Multi-App Run template (dapr.yaml), each with its
// daprd sidecar, as `dapr run -f dapr.yaml` does for this project, without the dapr CLI:
// the CLI compiles 1,400 packages (Kubernetes and Helm clients) that a local run never
// uses, and that compile was a third of a fresh machine's first `make run`.
//
// It reads the template strictly (a key it does not know fails), passes daprd the flags
// the CLI passes (and --enable-mtls with Sentry's address when the Configuration turns
// mTLS on), gives each app and sidecar the CLI's environment (APP_ID, APP_PORT,
// DAPR_HTTP_PORT, DAPR_GRPC_PORT, ...) on top of its own, and writes logs where the CLI
// does: <appDirPath>/.dapr/logs/<appID>_{app,daprd}_<time>.log, with "console" and
// "fileAndConsole" lines also on stdout as "== APP - <appID> == ...". SIGINT or SIGTERM
// stops the apps one by one in reverse order, then the sidecars (SIGTERM, SIGKILL after
// -grace).
//
//	run [-f dapr.yaml] [-daprd PATH] [-pid-dir DIR] [-grace 10s]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/taskgrid/taskgrid/internal/platform/procs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, argv []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	file := fs.String("f", "dapr.yaml", "the Multi-App Run template")
	daprd := fs.String("daprd", "", "the daprd binary (default: $DAPR_RUNTIME_PATH/.dapr/bin/daprd, as the CLI)")
	pidDir := fs.String("pid-dir", "", "write each process's PID to DIR/<appID>-{app,daprd}.pid while it runs")
	grace := fs.Duration("grace", 10*time.Second, "how long the apps, then the sidecars, have to stop after SIGTERM")
	if err := fs.Parse(argv); err != nil {
		return errUsage
	}
	if *daprd == "" {
		root := os.Getenv("DAPR_RUNTIME_PATH")
		if root == "" {
			return errors.New("no daprd: pass -daprd or set DAPR_RUNTIME_PATH (the directory holding .dapr/bin)")
		}
		*daprd = filepath.Join(root, ".dapr", "bin", "daprd")
	}
	apps, err := parseTemplate(*file)
	if err != nil {
		return err
	}
	out := &console{w: stdout}
	stamp := time.Now().Format("20060102150405")
	var sidecars, appProcs []*proc
	// The apps stop one by one in reverse order of the template (the worker drains to
	// the queue on the gateway before the gateway goes), then the sidecars together.
	stopAll := func() {
		for _, p := range slices.Backward(appProcs) {
			stopGroup([]*proc{p}, *grace)
		}
		stopGroup(sidecars, *grace)
	}
	for _, a := range apps {
		args, err := daprdArgs(a, sentryAddress())
		if err != nil {
			stopAll()
			return err
		}
		p, err := start(out, a, "daprd", a.DaprdLogDestination, stamp, *pidDir, *daprd, args...)
		if err != nil {
			stopAll()
			return err
		}
		sidecars = append(sidecars, p)
	}
	for _, a := range apps {
		p, err := start(out, a, "app", a.AppLogDestination, stamp, *pidDir, a.Command[0], a.Command[1:]...)
		if err != nil {
			stopAll()
			return err
		}
		appProcs = append(appProcs, p)
	}
	out.line("run", fmt.Sprintf("started %d apps with their sidecars from %s", len(apps), *file))

	all := append(append([]*proc(nil), sidecars...), appProcs...)
	everyoneGone := make(chan struct{})
	go func() {
		for _, p := range all {
			<-p.done
		}
		close(everyoneGone)
	}()
	select {
	case <-ctx.Done():
		out.line("run", "stopping the apps, then their sidecars")
		stopAll()
		return nil
	case <-everyoneGone:
		return errors.New("every app and sidecar exited")
	}
}

// proc is one started process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	pidFile string
}

// start runs bin for app a (kind "app" or "daprd") in a's directory with the CLI's
// environment, its output going where dest says.
func start(out *console, a AppSpec, kind, dest, stamp, pidDir, bin string, args ...string) (*proc, error) {
	name := a.AppID + "-" + kind
	cmd := exec.Command(bin, args...)
	cmd.Dir = a.AppDirPath
	cmd.Env = append(os.Environ(), appEnv(a)...)
	if v, ok := procs.Setting(cmd.Env, a.AppID, kind == "daprd"); ok && v != "" {
		cmd.Env = append(cmd.Env, procs.Env+"="+v) // the stack shares this machine: see package procs
	}
	cmd.SysProcAttr = sysProcAttr()
	var sinks []io.Writer
	var logf *os.File
	if dest == "" || dest == "file" || dest == "fileAndConsole" {
		dir := filepath.Join(a.AppDirPath, ".dapr", "logs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%s_%s_%s.log", a.AppID, kind, stamp)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		logf = f
		sinks = append(sinks, f)
	}
	var pr *os.File
	if dest == "console" || dest == "fileAndConsole" {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		pr = r
		cmd.Stdout, cmd.Stderr = w, w
		defer w.Close() // the child holds its own copy
	} else {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		if pr != nil {
			pr.Close()
		}
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	if pidDir != "" {
		p.pidFile = filepath.Join(pidDir, name+".pid")
		_ = os.WriteFile(p.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	}
	var copied sync.WaitGroup
	if pr != nil {
		copied.Go(func() {
			defer pr.Close()
			prefix := "APP - " + a.AppID
			if kind == "daprd" {
				prefix = "DAPRD - " + a.AppID
			}
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				for _, s := range sinks {
					fmt.Fprintln(s, line)
				}
				out.line(prefix, line)
			}
		})
	}
	go func() {
		err := cmd.Wait()
		copied.Wait()
		if p.pidFile != "" {
			os.Remove(p.pidFile)
		}
		out.line(name, fmt.Sprintf("exited: %v", exitText(err)))
		if logf != nil {
			logf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// stopGroup sends SIGTERM to every running process of ps, waits up to grace for them
// all, and kills those still running.
func stopGroup(ps []*proc, grace time.Duration) {
	for _, p := range ps {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for _, p := range ps {
		select {
		case <-p.done:
		case <-deadline:
			for _, q := range ps {
				_ = q.cmd.Process.Signal(syscall.SIGKILL)
			}
			for _, q := range ps {
				<-q.done
			}
			return
		}
	}
}

// console writes whole lines from several processes to one writer.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) line(prefix, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "== %s == %s\n", prefix, text)
}

// errUsage marks a bad command line.
var errUsage = errors.New("usage")

// sentryAddress is where sidecars get their certificates: DAPR_SENTRY_ADDRESS, else the
// address the dapr CLI uses for a local run.
func sentryAddress() string {
	if a := strings.TrimSpace(os.Getenv("DAPR_SENTRY_ADDRESS")); a != "" {
		return a
	}
	return "localhost:50001"
}
