package stacktest

import (
	"net"
	"os"
	"syscall"
	"testing"
)

// Ports come from below the kernel's ephemeral range (so no outgoing connection takes
// one before its server binds it), are free when handed out, and never repeat, across
// the blocks the process takes.
func TestFreePortsAreOutsideTheEphemeralRangeAndDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 2*portBlock + 10 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p < portLow || p >= portHigh || seen[p] {
			t.Fatalf("port %d: want a new one in [%d, %d)", p, portLow, portHigh)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", addr(p))
		if err != nil {
			t.Fatalf("port %d handed out but not free: %v", p, err)
		}
		ln.Close()
	}
	// A port something listens on is skipped: hold the next one the walk would try.
	ports.Lock()
	var ln net.Listener
	for ln == nil && ports.next < ports.end {
		if l, err := net.Listen("tcp", addr(ports.next)); err == nil {
			ln = l
		} else {
			ports.next++
		}
	}
	ports.Unlock()
	if ln == nil {
		t.Fatal("no port to hold busy")
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	if p, err := FreePort(); err != nil || p == busy {
		t.Fatalf("FreePort = %d, %v: want a port other than the busy %d", p, err, busy)
	}
}

// A block another process holds is never walked: with every block but one locked
// through lock files of their own (as another test process would hold them), the next
// block this process takes is the free one, and the blocks it took are locked against
// others. The test uses a lock directory of its own, so that the blocks it holds for a
// moment are not missed by the test processes running beside it.
func TestFreePortsComeFromBlocksNoOtherProcessHolds(t *testing.T) {
	isolatePorts(t)
	if _, err := FreePort(); err != nil { // this process holds a block now
		t.Fatal(err)
	}
	free := -1
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	for b := range portBlocks {
		f, err := os.OpenFile(blockFile(b), os.O_CREATE|os.O_RDONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // the block this process holds
			continue
		}
		if free < 0 {
			free = b // left for the claim below
			f.Close()
			continue
		}
		held = append(held, f)
	}
	if free < 0 {
		t.Fatal("no free block to leave")
	}
	ports.Lock()
	ports.next = ports.end // the current block is used up
	ports.Unlock()
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if lo := portLow + free*portBlock; p < lo || p >= lo+portBlock {
		t.Fatalf("FreePort = %d: want a port of the one free block [%d, %d)", p, lo, lo+portBlock)
	}
	f, err := os.Open(blockFile(free))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		t.Fatalf("block %d: another holder could lock it while this process walks it", free)
	}
	ports.Lock()
	ports.next = ports.end
	ports.Unlock()
	if _, err := FreePort(); err == nil {
		t.Fatal("FreePort with every block held: want an error")
	}
}

// isolatePorts gives the test a lock directory and a walk of its own, and puts the
// process's back afterwards.
func isolatePorts(t *testing.T) {
	ports.Lock()
	next, end, blocks, dir := ports.next, ports.end, ports.blocks, portLocks
	ports.next, ports.end, ports.blocks = 0, 0, nil
	portLocks = t.TempDir()
	ports.Unlock()
	t.Cleanup(func() {
		ports.Lock()
		for _, f := range ports.blocks {
			f.Close()
		}
		ports.next, ports.end, ports.blocks, portLocks = next, end, blocks, dir
		ports.Unlock()
	})
}
