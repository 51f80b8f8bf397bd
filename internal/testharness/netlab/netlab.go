// Package netlab builds the project's own test hosts on one machine: a private network
// of Linux network namespaces, each joined by a veth pair to a bridge that carries one
// /24 from 198.18.0.0/15 (the range RFC 2544 sets aside for benchmark networks, routed
// nowhere). The test process stays in the root namespace and reaches every host through
// the bridge, which holds the network's first address. Nothing here sends a packet to
// any address outside that /24.
//
// A Lab removes its namespaces, links and the processes left in them on Close, and New
// first removes what an earlier test process left behind if that process is gone. It
// needs root (CAP_NET_ADMIN) and iproute2's ip.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// prefix starts every namespace and link a Lab makes, followed by the creating PID.
const prefix = "tglab"

// Lab is one private network of hosts.
type Lab struct {
	// Gateway is the root namespace's address on the bridge (x.y.z.1): the test
	// process's own address as the hosts see it.
	Gateway string

	tag    string // prefix + PID: names every namespace and link
	net    string // "198.18.N." : the /24 without its last octet
	bridge string

	mu    sync.Mutex
	hosts []*Host
}

// Host is one network namespace with one address on the lab's network, and its own
// loopback for what stays inside the host.
type Host struct {
	Name string // as given to AddHost
	NS   string // the namespace's name (ip netns)
	IP   string
	veth string // the root namespace's end of its veth pair
	net  string // the lab's "a.b.c."
}

// NetPattern is the host's network as a MariaDB host pattern, e.g. 198.18.7.%.
func (h *Host) NetPattern() string { return h.net + "%" }

// Command returns the argv that runs bin with args inside the host's namespace. ip
// netns exec runs the program in place (same PID), so the caller can signal it.
func (h *Host) Command(bin string, args ...string) (string, []string) {
	return "ip", append([]string{"netns", "exec", h.NS, bin}, args...)
}

// Available says why a Lab cannot be built here, or nil.
func Available() error {
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("netlab: iproute2's ip not found (install the iproute2 package): %w", err)
	}
	if os.Geteuid() != 0 {
		return errors.New("netlab: network namespaces need root")
	}
	return nil
}

// New makes the bridge of a new lab, after removing the leftovers of labs whose test
// process is gone.
func New(ctx context.Context) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	cleanStale(ctx)
	l := &Lab{tag: prefix + strconv.Itoa(os.Getpid())}
	l.bridge = l.tag + "b"
	if len(l.bridge) > 15 {
		return nil, fmt.Errorf("netlab: interface name %q too long", l.bridge)
	}
	taken, err := usedNets()
	if err != nil {
		return nil, err
	}
	for i := range 512 {
		n := (os.Getpid() + i) % 512
		cand := fmt.Sprintf("198.%d.%d.", 18+n/256, n%256)
		if !taken[cand] {
			l.net = cand
			break
		}
	}
	if l.net == "" {
		return nil, errors.New("netlab: no free /24 in 198.18.0.0/15")
	}
	l.Gateway = l.net + "1"
	if err := run(ctx, "link", "add", l.bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"addr", "add", l.Gateway + "/24", "dev", l.bridge},
		{"link", "set", l.bridge, "up"},
	} {
		if err := run(ctx, args...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// Net is the lab's network, e.g. 198.18.7.0/24.
func (l *Lab) Net() string { return l.net + "0/24" }

// AddHost makes a namespace joined to the lab's bridge, with the next free address and
// its loopback up.
func (l *Lab) AddHost(ctx context.Context, name string) (*Host, error) {
	l.mu.Lock()
	idx := len(l.hosts)
	h := &Host{Name: name, NS: fmt.Sprintf("%s-%s", l.tag, name), IP: l.net + strconv.Itoa(10+idx), veth: fmt.Sprintf("%sv%d", l.tag, idx), net: l.net}
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	if len(h.veth) > 15 {
		return nil, fmt.Errorf("netlab: interface name %q too long", h.veth)
	}
	for _, args := range [][]string{
		{"netns", "add", h.NS},
		{"link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
		{"link", "set", h.veth, "master", l.bridge, "up"},
		{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
	} {
		if err := run(ctx, args...); err != nil {
			return nil, fmt.Errorf("netlab: host %s: %w", name, err)
		}
	}
	// The bridge port comes up after a moment (no STP delay on a new bridge, but the
	// veth carrier is asynchronous): wait until the host answers on its address.
	if err := l.waitReachable(ctx, h); err != nil {
		return nil, err
	}
	return h, nil
}

// waitReachable waits until a TCP connection from the root namespace to a port nothing
// listens on in the host is refused (RST): the path works both ways.
func (l *Lab) waitReachable(ctx context.Context, h *Host) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", h.IP+":9")
		if err == nil {
			c.Close()
			return nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("netlab: host %s (%s) not reachable: %w", h.Name, h.IP, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill sends SIGKILL to every process in the host's namespace: the host dies as a
// machine would, with whatever it held. The processes are the caller's own (only it
// starts processes in its lab's namespaces).
func (h *Host) Kill(ctx context.Context) error {
	pids, err := nsPids(ctx, h.NS)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}

// Close kills what still runs in the lab's namespaces, and removes them, their links
// and the bridge. It reports the first failure but tries everything.
func (l *Lab) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.mu.Lock()
	hosts := l.hosts
	l.hosts = nil
	l.mu.Unlock()
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, h := range hosts {
		note(removeNS(ctx, h.NS))
		note(removeLink(ctx, h.veth)) // usually gone with its peer in the namespace
	}
	note(removeLink(ctx, l.bridge))
	return first
}

// removeLink deletes a link unless it is gone (or goes meanwhile: the kernel removes a
// veth whose peer's namespace was deleted, asynchronously).
func removeLink(ctx context.Context, name string) error {
	if !linkExists(ctx, name) {
		return nil
	}
	if err := run(ctx, "link", "del", name); err != nil && linkExists(ctx, name) {
		return err
	}
	return nil
}

// removeNS kills the processes in a namespace, waits for them to go, and deletes it.
func removeNS(ctx context.Context, ns string) error {
	if !nsExists(ctx, ns) {
		return nil
	}
	for range 100 {
		pids, err := nsPids(ctx, ns)
		if err != nil || len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return run(ctx, "netns", "del", ns)
}

// cleanStale removes the namespaces and links of labs whose creating process is gone.
func cleanStale(ctx context.Context) {
	out, _ := output(ctx, "netns", "list")
	for _, line := range strings.Split(out, "\n") {
		ns, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if pid, ok := ownerPID(ns); ok && !alive(pid) {
			_ = removeNS(ctx, ns)
		}
	}
	out, _ = output(ctx, "-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if pid, ok := ownerPID(name); ok && !alive(pid) {
			_ = removeLink(ctx, name)
		}
	}
}

// ownerPID reads the PID in a name made by a Lab ("tglab<pid>-host", "tglab<pid>b",
// "tglab<pid>v3").
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end <= 0 {
		return 0, false
	}
	pid, err := strconv.Atoi(rest[:end])
	return pid, err == nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// usedNets lists the /24s (as "a.b.c.") with an address in the root namespace.
func usedNets() (map[string]bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("netlab: list addresses: %w", err)
	}
	taken := map[string]bool{}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if v4 := ipn.IP.To4(); v4 != nil {
				taken[fmt.Sprintf("%d.%d.%d.", v4[0], v4[1], v4[2])] = true
			}
		}
	}
	return taken, nil
}

func nsExists(ctx context.Context, ns string) bool {
	out, _ := output(ctx, "netns", "list")
	for _, line := range strings.Split(out, "\n") {
		if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); name == ns {
			return true
		}
	}
	return false
}

func linkExists(ctx context.Context, name string) bool {
	return exec.CommandContext(ctx, "ip", "link", "show", name).Run() == nil
}

func nsPids(ctx context.Context, ns string) ([]int, error) {
	out, err := output(ctx, "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func run(ctx context.Context, args ...string) error {
	_, err := output(ctx, args...)
	return err
}

func output(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
