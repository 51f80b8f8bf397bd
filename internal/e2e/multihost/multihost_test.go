// Package multihost runs the system across several hosts on one machine: network
// namespaces joined by a bridge (netlab), each with its own address. The infrastructure
// (Redis, MariaDB, the broker, Sentry, placement, scheduler) runs on one host with the
// first gateway, the storekeeper and analytics; a second gateway and two worker nodes
// each run on a host of their own. Every sidecar reaches the infrastructure and the other
// sidecars over those addresses, with mTLS; only a host's own app channel and sidecar API
// are on its loopback, as in a pod. Nothing is mocked.
package multihost

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/netlab"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

const apiKey = "multihost-test-key-0123456789abcdef"

var (
	lab    *netlab.Lab
	labErr error
	infra  *netlab.Host
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		labErr = errors.New("integration test: skipped with -short")
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	lab, labErr = netlab.New(ctx)
	if labErr == nil {
		defer func() {
			if err := lab.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "multihost: removing the test hosts:", err)
			}
		}()
		infra, labErr = lab.AddHost(ctx, "infra")
	}
	cancel()
	if labErr != nil {
		fmt.Fprintln(os.Stderr, "multihost: no test hosts:", labErr)
		if stacktest.InCI() {
			return 1
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "taskgrid-keys-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte("multihost:"+apiKey+"\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The gateways listen on their hosts' addresses, not on loopback: they require an
	// API key, as the gateway insists off loopback.
	return stacktest.Run(m, stacktest.Options{
		Apps:   []string{"storekeeper", "gateway", "analytics"},
		Infra:  infra,
		AppEnv: map[string]map[string]string{"gateway": {"API_KEYS_FILE": keys}, "worker": {"POOL_SIZE": "2"}},
	})
}

func setup(t *testing.T) *stacktest.Stack {
	t.Helper()
	if labErr != nil {
		if stacktest.InCI() && !testing.Short() {
			t.Fatal(labErr)
		}
		t.Skip(labErr)
	}
	return stacktest.Get(t)
}

func client(in *stacktest.Instance) stacktest.Gateway {
	return stacktest.Gateway{Base: in.BaseURL(), Header: map[string]string{"Authorization": "Bearer " + apiKey}}
}

// One scenario, in order: the hosts come up; tasks go in through both gateways and run
// on both nodes; the sidecars' traffic between hosts is mTLS; a whole worker host dies
// mid-run; a new host joins mid-run.
func TestAcrossHosts(t *testing.T) {
	st := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()

	hosts := map[string]*netlab.Host{}
	for _, name := range []string{"gw2", "node-a", "node-b"} {
		h, err := lab.AddHost(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		hosts[name] = h
	}
	gw2, err := st.StartAppOn(ctx, "gateway", hosts["gw2"], nil)
	if err != nil {
		t.Fatal(err)
	}
	nodeA, err := st.StartAppOn(ctx, "worker", hosts["node-a"], nil)
	if err != nil {
		t.Fatal(err)
	}
	nodeB, err := st.StartAppOn(ctx, "worker", hosts["node-b"], nil)
	if err != nil {
		t.Fatal(err)
	}
	gateways := []*stacktest.Instance{st.App("gateway"), gw2}
	for _, in := range []*stacktest.Instance{gateways[0], gw2, nodeA, nodeB} {
		t.Logf("%s on %s (%s)", in.Name, in.Host.Name, in.Host.IP)
	}

	t.Run("either gateway, either node", func(t *testing.T) {
		ids, clients := submitFollowed(ctx, t, gateways, 24, 200)
		perNode := map[string]int{}
		for i, id := range ids {
			v := clients[i].wait(ctx, t)
			if v.Status != "completed" || v.Attempts != 1 {
				t.Errorf("task %s: %s after %d attempts", id, v.Status, v.Attempts)
			}
			perNode[nodeOf(v.Worker)]++
			// The result, on disk on the infrastructure host, read back through the
			// gateway the client is on (the second one invokes the storekeeper across
			// hosts).
			resp, err := clients[i].gw.Do(ctx, http.MethodGet, "/api/v1/tasks/"+id+"/result", nil, nil)
			onDisk, ferr := os.ReadFile(filepath.Join(st.ResultsRoot, "multihost", id+".json"))
			if err != nil || ferr != nil || resp.Code != http.StatusOK || string(resp.Body) != string(onDisk) {
				t.Errorf("result of %s: %d %s (%v), on disk %s (%v)", id, resp.Code, resp.Body, err, onDisk, ferr)
			}
		}
		t.Logf("tasks per node: %v", perNode)
		for _, in := range []*stacktest.Instance{nodeA, nodeB} {
			if perNode[in.Name] == 0 {
				t.Errorf("node %s (host %s) ran no task: %v", in.Name, in.Host.Name, perNode)
			}
		}
	})

	t.Run("sidecars talk mTLS across hosts", func(t *testing.T) {
		checkMTLS(t, st, nodeA)
	})

	t.Run("a worker host killed mid-run", func(t *testing.T) {
		const n = 12
		ids, clients := submitFollowed(ctx, t, gateways, n, 1500)
		// Kill the host as soon as it has just started a task: it surely holds it.
		var fresh string
		for fresh == "" {
			for _, id := range ids {
				v, err := client(gateways[0]).Get(ctx, id)
				if err == nil && v.Status == "running" && nodeOf(v.Worker) == nodeA.Name && time.Since(*v.StartedAt) < 300*time.Millisecond {
					fresh = id
					break
				}
			}
			if ctx.Err() != nil {
				t.Fatal("node-a never started a task")
			}
		}
		killed := time.Now()
		if err := hosts["node-a"].Kill(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed every process of host node-a while it ran %s", fresh)
		// Kill → back in the queue → running elsewhere: what the recovery target
		// (≤ 3 s) is about. The bench's recovery scenarios measure it with a free slot
		// waiting; here node b's two slots are busy, so the task also waits for one
		// (ahead of every normal task). The test reports the figures, never asserts them.
		again, moved := waitRanAgain(ctx, t, client(gw2), fresh, killed)
		if requeued := again.QueuedAt; requeued == nil || requeued.Before(killed) {
			t.Errorf("task %s ran again, but its queue time %v is not after the kill (%s)", fresh, requeued, killed.Format(time.StampMicro))
		} else {
			t.Logf("host node-a killed → %s back in the queue after %s, running on another host after about %s",
				fresh, requeued.Sub(killed).Round(10*time.Millisecond), moved.Round(10*time.Millisecond))
		}

		for i, id := range ids {
			v := clients[i].wait(ctx, t)
			switch {
			case v.Status != "completed":
				t.Errorf("task %s ended %s (%s)", id, v.Status, v.Error)
			case id == fresh && (v.Attempts != 2 || nodeOf(v.Worker) == nodeA.Name):
				t.Errorf("task %s, held by the killed host, ran %d attempts, last on %s; want 2, elsewhere", id, v.Attempts, v.Worker)
			case v.Attempts > 2:
				t.Errorf("task %s ran %d attempts", id, v.Attempts)
			}
		}
	})

	var nodeC *stacktest.Instance
	t.Run("a host joining mid-run takes work", func(t *testing.T) {
		h, err := lab.AddHost(ctx, "node-c")
		if err != nil {
			t.Fatal(err)
		}
		hosts["node-c"] = h
		// Node b alone has two slots: most of these wait until node c comes. Their 12 s of
		// work on node b outlasts node c's start by far, even on a loaded machine (with
		// 400 ms tasks, node b once ran all 16 before node c was placed).
		ids, clients := submitFollowed(ctx, t, gateways, 16, 1500)
		joining := time.Now()
		nodeC, err = st.StartAppOn(ctx, "worker", h, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("node c ready %s after the tasks went in", time.Since(joining).Round(time.Millisecond))
		perNode := map[string]int{}
		for i, id := range ids {
			v := clients[i].wait(ctx, t)
			if v.Status != "completed" || v.Attempts != 1 {
				t.Errorf("task %s: %s after %d attempts", id, v.Status, v.Attempts)
			}
			perNode[nodeOf(v.Worker)]++
		}
		t.Logf("tasks per node: %v", perNode)
		if perNode[nodeC.Name] == 0 {
			t.Errorf("the joining node %s ran no task: %v", nodeC.Name, perNode)
		}
	})

	// The recovery target's case: a host dies while another has its slots free. Three long
	// tasks, each running before the next goes in; those on node b are cancelled, so
	// that node b's two slots are free for what node c held when it dies.
	t.Run("a worker host killed while another has free slots", func(t *testing.T) {
		if nodeC == nil {
			t.Skip("node c did not join")
		}
		ids, clients := make([]string, 0, 3), make([]*followed, 0, 3)
		held, cancelled := map[string]bool{}, map[string]bool{} // sets of task ids
		for range 3 {
			i, c := submitFollowed(ctx, t, gateways, 1, 4000)
			ids, clients = append(ids, i[0]), append(clients, c[0])
			v, err := client(gateways[0]).WaitStatus(ctx, i[0], "running")
			if err != nil {
				t.Fatal(err)
			}
			switch nodeOf(v.Worker) {
			case nodeC.Name:
				held[i[0]] = true
			case nodeB.Name:
				cancelled[i[0]] = true
			}
		}
		if len(held) == 0 {
			t.Fatalf("node c held none of the tasks %v", ids)
		}
		for id := range cancelled {
			if resp, err := client(gateways[0]).Do(ctx, http.MethodDelete, "/api/v1/tasks/"+id, nil, nil); err != nil || resp.Code != http.StatusOK {
				t.Fatalf("cancel %s: %d %s (%v)", id, resp.Code, resp.Body, err)
			}
			if _, err := client(gateways[0]).WaitStatus(ctx, id, "cancelled"); err != nil {
				t.Fatal(err)
			}
		}
		killed := time.Now()
		if err := hosts["node-c"].Kill(ctx); err != nil {
			t.Fatal(err)
		}
		// Kill → running on node b, for each task node c held (they run again at about
		// the same moment: polling one after the other adds little).
		for id := range held {
			v, moved := waitRanAgain(ctx, t, client(gw2), id, killed)
			if nodeOf(v.Worker) != nodeB.Name {
				t.Errorf("task %s ran again on %s, want %s", id, v.Worker, nodeB.Name)
			}
			t.Logf("host node-c killed → %s running on node-b, slots free: after about %s (the recovery target: 3 s)", id, moved.Round(10*time.Millisecond))
		}
		for i, id := range ids {
			if cancelled[id] {
				continue
			}
			v := clients[i].wait(ctx, t)
			if want := map[bool]int{true: 2, false: 1}[held[id]]; v.Status != "completed" || v.Attempts != want {
				t.Errorf("task %s: %s after %d attempts, want completed after %d", id, v.Status, v.Attempts, want)
			}
		}
	})
}

// waitRanAgain polls task id until a second attempt of it runs (or ran), and returns its
// view and how long after since that was seen.
func waitRanAgain(ctx context.Context, t *testing.T, g stacktest.Gateway, id string, since time.Time) (stacktest.TaskView, time.Duration) {
	t.Helper()
	for {
		v, err := g.Get(ctx, id)
		if err == nil && v.Attempts >= 2 && (v.Status == "running" || v.Status == "completed") {
			return v, time.Since(since)
		}
		if ctx.Err() != nil {
			t.Fatalf("task %s never ran again after its host was killed", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeOf is the node part of a task's worker ("<node>/<slot>").
func nodeOf(worker string) string {
	node, _, _ := strings.Cut(worker, "/")
	return node
}

// followed is one task submitted through a gateway and followed on that gateway's SSE.
type followed struct {
	gw          stacktest.Gateway
	id          string
	done        chan struct{}
	completions int
	problems    []string
}

// submitFollowed submits n sleep tasks of ms milliseconds, alternating gateways, each
// followed on the SSE stream of the gateway it went in through.
func submitFollowed(ctx context.Context, t *testing.T, gateways []*stacktest.Instance, n, ms int) ([]string, []*followed) {
	t.Helper()
	ids := make([]string, n)
	fs := make([]*followed, n)
	for i := range n {
		gw := client(gateways[i%len(gateways)])
		v, _, err := gw.SubmitRetrying(ctx, "sleep", map[string]any{"ms": ms}, "multihost")
		if err != nil {
			t.Fatal(err)
		}
		events, connected := gw.Events(ctx, v.ID)
		if err := <-connected; err != nil {
			t.Fatal(err)
		}
		f := &followed{gw: gw, id: v.ID, done: make(chan struct{})}
		go func() {
			defer close(f.done)
			for ev := range events {
				switch ev.Event {
				case "completed":
					f.completions++
				case "failed":
					f.problems = append(f.problems, "failure event: "+string(ev.Data))
				}
				if strings.Contains(string(ev.Data), "attempt_failed") {
					f.problems = append(f.problems, "event mentions a failed attempt: "+string(ev.Data))
				}
			}
		}()
		ids[i], fs[i] = v.ID, f
	}
	return ids, fs
}

// wait waits for the task's stream to end, checks that it told exactly one completion
// and nothing of failed attempts, and returns the task's final view.
func (f *followed) wait(ctx context.Context, t *testing.T) stacktest.TaskView {
	t.Helper()
	select {
	case <-f.done:
	case <-ctx.Done():
		t.Fatalf("stream of %s on %s did not end: %v", f.id, f.gw.Base, ctx.Err())
	}
	if f.completions != 1 || len(f.problems) > 0 {
		t.Errorf("stream of %s on %s: %d completions, %v", f.id, f.gw.Base, f.completions, f.problems)
	}
	v, err := f.gw.Get(ctx, f.id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkMTLS connects to a worker sidecar's sidecar-to-sidecar port on its host's
// address: it presents a certificate from the stack's Sentry for the worker's SPIFFE id,
// and refuses a client without one, and a client speaking plain text.
func checkMTLS(t *testing.T, st *stacktest.Stack, in *stacktest.Instance) {
	t.Helper()
	anchors, err := os.ReadFile(st.TrustAnchors)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if block, _ := pem.Decode(anchors); block == nil || !roots.AppendCertsFromPEM(anchors) {
		t.Fatalf("trust anchors %s: no certificate", st.TrustAnchors)
	}
	address := net.JoinHostPort(in.Host.IP, fmt.Sprint(in.Ports.Internal))
	var leaf *x509.Certificate
	conf := &tls.Config{
		InsecureSkipVerify: true, // verified below: SPIFFE certificates name no host
		NextProtos:         []string{"h2"},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return fmt.Errorf("not issued by the stack's Sentry: %w", err)
			}
			leaf = certs[0]
			return nil
		},
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", address, conf)
	if err != nil {
		t.Fatalf("TLS to %s's sidecar at %s: %v", in.Name, address, err)
	}
	defer conn.Close()
	want := "spiffe://public/ns/default/" + in.ID // the trust domain of components/config.yaml
	var ids []string
	for _, u := range leaf.URIs {
		ids = append(ids, u.String())
	}
	if len(ids) != 1 || ids[0] != want {
		t.Errorf("%s's sidecar presents %v, want %s", in.Name, ids, want)
	}
	// Without a client certificate the server ends the connection: TLS 1.3 reports
	// it on the first read.
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	if _, err := conn.Read(make([]byte, 64)); err == nil {
		t.Errorf("%s's sidecar answered a client with no certificate", in.Name)
	} else {
		t.Logf("a client without a certificate: %v", err)
	}
	// Plain text (an HTTP/2 preface, as a gRPC client without TLS sends) gets no
	// HTTP/2 answer: the first bytes back, if any, are not a SETTINGS frame.
	plain, err := net.DialTimeout("tcp", address, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_ = plain.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = plain.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	buf := make([]byte, 9)
	if n, _ := plain.Read(buf); n >= 4 && buf[3] == 0x04 {
		t.Errorf("%s's sidecar answered plain-text HTTP/2 with a SETTINGS frame", in.Name)
	}
}
