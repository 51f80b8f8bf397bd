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

// ports hands out free loopback ports, never the same one twice in a process, and never
// one that another process of this machine using FreePort may hand out: each process
// takes blocks of the range for itself (see claimBlock) and walks only those.
var ports struct {
	sync.Mutex
	next, end int        // the rest of the current block: [next, end)
	blocks    []*os.File // the blocks' lock files, held open while the process lives
}

// The ports a stack gets: below Linux's ephemeral range (32768–60999), where the kernel
// picks the local port of every outgoing connection, so that no connection of the
// machine (a sidecar to Redis, a test's HTTP client) can take a port between the moment
// it is found free and the moment its server binds it; and above the fixed ports of
// `make run` (all below 10000 or from 30001).
const (
	portLow    = 10000
	portHigh   = 30000
	portBlock  = 200 // a stack uses about 40; the bench's and multihost's a few times that
	portBlocks = (portHigh - portLow) / portBlock
)

// portLocks is the directory of the blocks' lock files, shared by the processes of the
// machine.
var portLocks = filepath.Join(os.TempDir(), "taskgrid-ports")

// blockFile is the lock file of block b (ports from portLow+b*portBlock).
func blockFile(b int) string { return filepath.Join(portLocks, fmt.Sprintf("block-%d", b)) }

// claimBlock takes a block of ports no other process holds: it locks the block's file
// (flock, released by the kernel when the process ends, however it ends), trying the
// blocks from a starting point of its own. Test packages run as processes of their own,
// several at once (go test -p), each starting a stack: before the blocks, two of them
// walking the same range from nearby starting points now and then handed out the same
// port, found free by both, and the second server to bind it failed ("address already
// in use").
func claimBlock() error {
	if err := os.MkdirAll(portLocks, 0o777|os.ModeSticky); err != nil {
		return fmt.Errorf("port blocks: %w", err)
	}
	first := int((uint64(os.Getpid())*7919 + uint64(time.Now().UnixNano())) % portBlocks)
	for i := range portBlocks {
		b := (first + i) % portBlocks
		f, err := os.OpenFile(blockFile(b), os.O_CREATE|os.O_RDONLY, 0o644)
		if err != nil {
			return fmt.Errorf("port blocks: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue // another process holds it
		}
		ports.blocks = append(ports.blocks, f)
		ports.next, ports.end = portLow+b*portBlock, portLow+(b+1)*portBlock
		return nil
	}
	return errors.New("find a free port: every block of ports is held by another process")
}

// FreePort returns a loopback port that nothing listens on now, from a block of ports
// this process holds.
func FreePort() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	for {
		for ports.next < ports.end {
			port := ports.next
			ports.next++
			ln, err := net.Listen("tcp", addr(port))
			if err != nil {
				continue // taken by something that does not take blocks
			}
			ln.Close()
			return port, nil
		}
		if err := claimBlock(); err != nil {
			return 0, err
		}
	}
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
