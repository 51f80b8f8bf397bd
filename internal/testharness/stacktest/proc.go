package stacktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/netlab"
)

// Proc is one process the stack started. It is stopped by its own PID only.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	mu      sync.Mutex
	exited  bool
	waitErr error
}

// startProc starts name with args, its stdout and stderr appended to dir/logs/name.log,
// on host (nil: in this network namespace).
func startProc(dir, name string, env []string, workDir string, host *netlab.Host, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(dir, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if host != nil {
		bin, args = host.Command(bin, args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = workDir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a Ctrl-C to `go test` reaches us, and we stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.exited, p.waitErr = true, err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited, p.waitErr
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, waits up to grace, then SIGKILL.
func (p *Proc) Stop(grace time.Duration) {
	if ok, _ := p.Exited(); ok {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// waitTCP waits until addr accepts connections, failing early if p exits.
func waitTCP(ctx context.Context, p *Proc, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if ok, werr := p.Exited(); ok {
			return fmt.Errorf("%s exited before listening on %s (%v); log: %s", p.Name, addr, werr, p.LogPath)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not listen on %s: %w; log: %s", p.Name, addr, ctx.Err(), p.LogPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ports hands out free loopback ports, never the same one twice in a process.
var ports struct {
	sync.Mutex
	used map[int]bool
	next int
}

// The ports a stack gets: below Linux's ephemeral range (32768–60999), where the kernel
// picks the local port of every outgoing connection, so that no connection of the
// machine (a sidecar to Redis, a test's HTTP client) can take a port between the moment
// it is found free and the moment its server binds it; and above the fixed ports of
// `make run` (all below 10000 or from 30001).
const (
	portLow  = 10000
	portHigh = 30000
)

// FreePort returns a loopback port that nothing listens on now. Each process walks the
// range from its own starting point, so that stacks of test packages running at once
// rarely try the same ports.
func FreePort() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.used == nil {
		ports.used = map[int]bool{}
		ports.next = portLow + int((uint64(os.Getpid())*7919+uint64(time.Now().UnixNano()))%(portHigh-portLow))
	}
	for range portHigh - portLow {
		port := ports.next
		ports.next++
		if ports.next == portHigh {
			ports.next = portLow
		}
		if ports.used[port] {
			continue
		}
		ln, err := net.Listen("tcp", addr(port))
		if err != nil {
			continue // taken
		}
		ln.Close()
		ports.used[port] = true
		return port, nil
	}
	return 0, errors.New("find a free port: none left")
}

func freePorts(n int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// addr is a port on the machine's loopback.
func addr(port int) string { return hostAddr(nil, port) }

// hostIP is the address the stack's processes on host listen on: the host's, or the
// machine's loopback for nil.
func hostIP(host *netlab.Host) string {
	if host == nil {
		return "127.0.0.1"
	}
	return host.IP
}

func hostAddr(host *netlab.Host, port int) string {
	return net.JoinHostPort(hostIP(host), strconv.Itoa(port))
}
