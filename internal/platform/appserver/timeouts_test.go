package appserver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/platform/runner"
)

// The tests below run a real server (NewHTTPServer, as Run builds both of its own,
// served by runner.ServeHTTP) on a free loopback port, with timeouts short enough for a
// test. They assert outcomes (a connection closed, a request served), never how long
// something took, but for generous upper bounds: the machine is shared and noisy.

// testTimeouts are short, but long enough that a request sent at once is never cut.
var testTimeouts = Timeouts{ReadHeader: 400 * time.Millisecond, Read: time.Second, Write: time.Second, Idle: 400 * time.Millisecond}

// bound is how long any outcome may take to show.
const bound = 15 * time.Second

// serve runs handler on a loopback port until the test ends and returns its address.
func serve(t *testing.T, handler http.Handler, to Timeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.ServeHTTP(ctx, NewHTTPServer(handler, to), ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, bound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readUntilClosed reads c until the server closes it (EOF or a reset) and returns what
// it read; closed is false if c was still open after bound.
func readUntilClosed(c net.Conn) (data []byte, closed bool) {
	_ = c.SetReadDeadline(time.Now().Add(bound))
	data, err := io.ReadAll(c)
	return data, !errors.Is(err, os.ErrDeadlineExceeded) // io.EOF (nil here) or a reset: closed either way
}

// waitClosed fails the test if the server does not close c within bound.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if data, closed := readUntilClosed(c); !closed {
		t.Fatalf("connection still open after %s (read %q)", bound, data)
	}
}

// okHandler answers "ok" and counts the requests it served.
type okHandler struct{ served atomic.Int64 }

func (h *okHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.served.Add(1)
	_, _ = io.WriteString(w, "ok")
}

// get sends a normal request on a connection of its own.
func get(t *testing.T, addr string) {
	t.Helper()
	client := &http.Client{Timeout: bound, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("normal request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("normal request: %d %q", resp.StatusCode, body)
	}
}

// TestSlowlorisIsCutOff: clients that send their headers a byte at a time, slower than
// ReadHeaderTimeout allows, are disconnected without being served, and a normal request
// on another connection is served meanwhile.
func TestSlowlorisIsCutOff(t *testing.T) {
	t.Parallel()
	h := &okHandler{}
	addr := serve(t, h, testTimeouts)

	const slow = 20
	var wg sync.WaitGroup
	var cut atomic.Int64
	started := make(chan struct{}, slow)
	for range slow {
		c := dial(t, addr)
		wg.Go(func() {
			// A header that never ends, a byte every 50 ms, until the server hangs up.
			go func() {
				_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
				started <- struct{}{}
				for {
					if _, err := c.Write([]byte("a")); err != nil {
						return // the server closed the connection
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			data, closed := readUntilClosed(c)
			if closed {
				cut.Add(1)
			}
			// net/http hangs up without a word; it answers 400 should the deadline fall
			// inside a header's name (a partial line is read as a whole one): never 2xx.
			if len(data) > 0 && !strings.HasPrefix(string(data), "HTTP/1.1 4") {
				t.Errorf("slow client got an answer: %q", data)
			}
		})
	}
	for range slow {
		<-started
	}
	get(t, addr) // served while the slow clients are still sending
	wg.Wait()
	if cut.Load() != slow || h.served.Load() != 1 {
		t.Fatalf("%d of %d slow clients cut off; %d requests served, want 1 (the normal one)", cut.Load(), slow, h.served.Load())
	}
	get(t, addr) // and the server still serves afterwards
}

// TestSlowBodyIsCutOff: a client that sends its headers at once but its body slower than
// ReadTimeout allows fails the handler's read and is disconnected.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	readErr := make(chan error, 1)
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		readErr <- err
	}), testTimeouts)
	c := dial(t, addr)
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("handler's body read ended with %v, want a deadline error", err)
		}
	case <-time.After(bound):
		t.Fatalf("handler still reading the slow body after %s", bound)
	}
	waitClosed(t, c)
}

// TestIdleConnectionIsClosed: a keep-alive connection that carries no request after its
// last response is closed after IdleTimeout; one in use is not.
func TestIdleConnectionIsClosed(t *testing.T) {
	t.Parallel()
	to := testTimeouts
	to.Idle = time.Second
	addr := serve(t, &okHandler{}, to)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	roundTrip := func() {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(bound))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close || string(body) != "ok" {
			t.Fatalf("answer %d %q (close %v), want 200 ok keeping the connection", resp.StatusCode, body, resp.Close)
		}
	}
	// Requests that follow each other closer than IdleTimeout keep the connection.
	for range 3 {
		roundTrip()
		time.Sleep(to.Idle / 10)
	}
	_ = c.SetReadDeadline(time.Now().Add(bound))
	if n, err := br.Read(make([]byte, 1)); n != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection: read %d bytes, %v; want it closed by the server", n, err)
	}
}

// TestWriteTimeout: a response that takes longer than WriteTimeout is cut; a handler
// that lifts its write deadline (as the gateway's event stream does) streams on.
func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	const chunks = 8
	step := testTimeouts.Write / 4 // the whole response takes twice WriteTimeout
	stream := func(lift bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			if lift {
				if err := rc.SetWriteDeadline(time.Time{}); err != nil {
					t.Errorf("lift the write deadline: %v", err)
				}
			}
			for i := range chunks {
				if _, err := io.WriteString(w, "chunk\n"); err != nil {
					return
				}
				if rc.Flush() != nil || r.Context().Err() != nil {
					return
				}
				if i < chunks-1 {
					time.Sleep(step)
				}
			}
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/cut", stream(false))
	mux.Handle("/lifted", stream(true))
	addr := serve(t, mux, testTimeouts)
	client := &http.Client{Timeout: bound, Transport: &http.Transport{DisableKeepAlives: true}}

	for path, want := range map[string]bool{"/cut": false, "/lifted": true} {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		complete := err == nil && strings.Count(string(body), "chunk\n") == chunks
		if complete != want {
			t.Errorf("%s: read %d chunks of %d (%v); want complete=%v", path, strings.Count(string(body), "chunk\n"), chunks, err, want)
		}
	}
}

// TestRunServersHaveTimeouts: the servers Run builds use the documented timeouts.
func TestRunServersHaveTimeouts(t *testing.T) {
	t.Parallel()
	for name, to := range map[string]Timeouts{"public": PublicTimeouts, "channel": ChannelTimeouts} {
		s := NewHTTPServer(http.NotFoundHandler(), to)
		if s.ReadHeaderTimeout <= 0 || s.ReadTimeout < s.ReadHeaderTimeout || s.WriteTimeout <= s.ReadTimeout || s.IdleTimeout <= 90*time.Second {
			t.Errorf("%s: %+v: want every timeout set, Write above Read, Idle above Go's client idle timeout (90 s)", name, to)
		}
	}
	// The worker's hand-off of results gives up after a minute: the channel must not
	// come first.
	if ChannelTimeouts.Read <= time.Minute || ChannelTimeouts.Write <= time.Minute {
		t.Errorf("channel timeouts %+v: want Read and Write above the worker's 1 min hand-off", ChannelTimeouts)
	}
}
