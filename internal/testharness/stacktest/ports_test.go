package stacktest

import (
	"net"
	"testing"
)

// Ports come from below the kernel's ephemeral range (so no outgoing connection takes
// one before its server binds it), are free when handed out, and never repeat.
func TestFreePortsAreOutsideTheEphemeralRangeAndDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
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
	// A port something listens on is skipped: take the next one the walk would try.
	ports.Lock()
	var ln net.Listener
	for ln == nil && ports.next < portHigh {
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
