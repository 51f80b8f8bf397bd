package netlab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the program run inside the hosts: NETLAB_HELPER=listen
// echoes lines on NETLAB_ADDR; NETLAB_HELPER=dial sends one line there and prints the
// echo.
func TestMain(m *testing.M) {
	switch os.Getenv("NETLAB_HELPER") {
	case "listen":
		ln, err := net.Listen("tcp", os.Getenv("NETLAB_ADDR"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(2)
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprint(c, "echo "+line)
			}()
		}
	case "dial":
		out, err := dial(os.Getenv("NETLAB_ADDR"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print(out)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func dial(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	fmt.Fprintln(c, "hello")
	return bufio.NewReader(c).ReadString('\n')
}

// requireAvailable fails the test in CI when a lab cannot be built here, and skips it
// elsewhere.
func requireAvailable(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func TestOwnerPID(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"tglab123-infra", 123, true},
		{"tglab42b", 42, true},
		{"tglab7v3", 7, true},
		{"tglab-x", 0, false},
		{"eth0", 0, false},
		{"tglabb", 0, false},
	} {
		pid, ok := ownerPID(tc.name)
		if pid != tc.pid || ok != tc.ok {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.pid, tc.ok)
		}
	}
}

// Two hosts reach each other and the test process over the lab's addresses; a host's
// loopback is its own; Close leaves no namespace, link or process behind.
func TestHostsReachEachOtherAndCloseRemovesAll(t *testing.T) {
	requireAvailable(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lab, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			lab.Close()
		}
	}()
	a, err := lab.AddHost(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddHost(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if a.IP == b.IP || !strings.HasPrefix(a.IP, strings.TrimSuffix(lab.Net(), "0/24")) {
		t.Fatalf("addresses %s, %s on %s", a.IP, b.IP, lab.Net())
	}

	listen := func(h *Host, addr string) *exec.Cmd {
		t.Helper()
		bin, args := h.Command(os.Args[0])
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "NETLAB_HELPER=listen", "NETLAB_ADDR="+addr)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "listening\n" {
			t.Fatalf("helper in %s on %s: %q, %v", h.Name, addr, line, err)
		}
		return cmd
	}
	onB := listen(b, b.IP+":7000")
	loopB := listen(b, "127.0.0.1:7001")

	// From the root namespace, over the bridge.
	if got, err := dial(b.IP + ":7000"); err != nil || got != "echo hello\n" {
		t.Errorf("root → b: %q, %v", got, err)
	}
	// From host a, through its own veth.
	bin, args := a.Command(os.Args[0])
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "NETLAB_HELPER=dial", "NETLAB_ADDR="+b.IP+":7000")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "echo hello\n" {
		t.Errorf("a → b: %q, %v", out, err)
	}
	// b's loopback is b's: neither the root namespace nor a reaches what b serves there.
	if got, err := dial("127.0.0.1:7001"); err == nil {
		t.Errorf("root reached b's loopback: %q", got)
	}
	cmd = exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "NETLAB_HELPER=dial", "NETLAB_ADDR=127.0.0.1:7001")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("a reached b's loopback: %q", out)
	}

	// Kill stops the host's processes.
	if err := b.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*exec.Cmd{onB, loopB} {
		err := c.Wait()
		if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("helper in b after Kill: %v", err)
		}
	}

	// Close kills what still runs (a listener in a) and removes everything.
	stray := listen(a, a.IP+":7002")
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	_ = stray.Wait()
	if !stray.ProcessState.Exited() && stray.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("helper in a survived Close: %v", stray.ProcessState)
	}
	for _, ns := range []string{a.NS, b.NS} {
		if nsExists(ctx, ns) {
			t.Errorf("namespace %s still exists", ns)
		}
	}
	for _, link := range []string{a.veth, b.veth, lab.bridge} {
		if linkExists(ctx, link) {
			t.Errorf("link %s still exists", link)
		}
	}
}

// What a killed test process left (a namespace with a process in it, a link) is removed
// by the next New; what a live process owns is not.
func TestNewRemovesWhatADeadProcessLeft(t *testing.T) {
	requireAvailable(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := gone.Process.Pid
	ns := fmt.Sprintf("%s%d-left", prefix, dead)
	link := fmt.Sprintf("%s%db", prefix, dead)
	mine := fmt.Sprintf("%s%d-mine", prefix, os.Getpid()) // a live owner: kept
	for _, args := range [][]string{{"netns", "add", ns}, {"netns", "add", mine}, {"link", "add", link, "type", "bridge"}} {
		if err := run(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		_ = removeNS(ctx, ns)
		_ = removeNS(ctx, mine)
		_ = removeLink(ctx, link)
	}()
	// A process left running in the dead owner's namespace.
	sleeper := exec.Command("ip", "netns", "exec", ns, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()

	lab, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	if nsExists(ctx, ns) || linkExists(ctx, link) {
		t.Errorf("the dead process's namespace %s (%v) or link %s (%v) survived", ns, nsExists(ctx, ns), link, linkExists(ctx, link))
	}
	if !nsExists(ctx, mine) {
		t.Errorf("the namespace %s of a live process was removed", mine)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		sleeper.Process.Kill()
		t.Error("the process in the dead owner's namespace was not killed")
	}
}
