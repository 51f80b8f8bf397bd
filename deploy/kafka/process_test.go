package main

// These tests build the real program, run it as a subprocess and talk the Kafka wire
// protocol to it with franz-go's kgo client.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	testTopic  = "orders"
	otherTopic = "audit"
	testParts  = 3 // not the default 1, so the test sees -partitions applied
	testGroup  = "orders-workers"
	numRecords = 100
)

func TestBrokerSurvivesSIGKILL(t *testing.T) {
	bin := buildBroker(t)
	dir := t.TempDir()
	dataDir, ready := filepath.Join(dir, "data"), filepath.Join(dir, "ready")
	addr := freeAddr(t)
	args := func(topics string) []string {
		return []string{"-addr", addr, "-data-dir", dataDir, "-topics", topics,
			"-partitions", fmt.Sprint(testParts), "-ready-file", ready}
	}

	// First run: seed topics, produce, consume and commit in a group.
	start := time.Now()
	p := startBroker(t, bin, args(testTopic+","+otherTopic)...)
	if got := waitReady(t, p, ready); got != addr {
		t.Fatalf("ready file says %q, want %q", got, addr)
	}
	t.Logf("first start: ready after %v", time.Since(start).Round(time.Millisecond))
	checkStartLog(t, p, addr, dataDir)
	checkTopics(t, addr, map[string]int{testTopic: testParts, otherTopic: testParts})

	produce(t, addr, numRecords, -1, func(i int) string { return fmt.Sprintf("v-%d", i) })
	got := consumeGroup(t, addr, numRecords)
	if len(got) != numRecords {
		t.Fatalf("group consumer got %d distinct records, want %d", len(got), numRecords)
	}
	if n := committedTotal(t, addr); n != numRecords {
		t.Fatalf("before kill: committed offsets sum to %d, want %d", n, numRecords)
	}

	// SIGKILL: no chance to save anything at shutdown.
	p.kill(t)
	if err := os.Remove(ready); err != nil { // a killed broker cannot remove its ready file
		t.Fatalf("ready file after SIGKILL: %v", err)
	}

	// Restart on the same data dir and port, with one more topic: SeedTopics does not apply
	// to a data dir that already has state, so this checks the broker creates it anyway.
	start = time.Now()
	p = startBroker(t, bin, args(testTopic+","+otherTopic+",late")...)
	waitReady(t, p, ready)
	t.Logf("restart after SIGKILL: ready after %v", time.Since(start).Round(time.Millisecond))
	checkTopics(t, addr, map[string]int{testTopic: testParts, otherTopic: testParts, "late": testParts})

	all := consumeDirect(t, addr, numRecords)
	var missing []string
	for i := range numRecords {
		if v := fmt.Sprintf("v-%d", i); !all[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d records are missing after restart, e.g. %q", len(missing), missing[0])
	}
	if len(all) != numRecords {
		t.Errorf("after restart the topic holds %d distinct records, want %d", len(all), numRecords)
	}
	if n := committedTotal(t, addr); n != numRecords {
		t.Fatalf("after restart: committed offsets sum to %d, want %d", n, numRecords)
	}
	resumeGroup(t, addr)

	// SIGTERM: graceful stop, exit 0, the stop line logged and the ready file removed.
	p.terminate(t)
	if !strings.Contains(p.stderr.String(), `"msg":"kafka broker stopped"`) {
		t.Errorf("no stop log line in stderr:\n%s", p.stderr.String())
	}
	if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file after a graceful stop: err = %v, want it removed", err)
	}
}

func TestBinaryExitCodes(t *testing.T) {
	bin := buildBroker(t)

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenAddr := taken.Addr().String()

	lockedDir := t.TempDir() // locked as a running broker would lock it
	lock, err := lockDir(lockedDir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"port taken", []string{"-addr", takenAddr, "-data-dir", t.TempDir()}, 1,
			"kafka broker: " + takenAddr + " is already in use (is another broker running? pass -addr)"},
		{"data dir in use", []string{"-addr", freeAddr(t), "-data-dir", lockedDir}, 1,
			"kafka broker: data dir " + lockedDir + " is in use by another broker (pass another -data-dir)"},
		{"non-loopback addr", []string{"-addr", "0.0.0.0:9092", "-data-dir", t.TempDir()}, 2,
			"host must be a loopback address"},
		{"no data dir", []string{"-addr", freeAddr(t)}, 2, "-data-dir (or KAFKA_DATA_DIR) is required"},
		{"bad partitions", []string{"-addr", freeAddr(t), "-data-dir", t.TempDir(), "-partitions", "0"}, 2,
			"-partitions 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			cmd.Env = cleanEnv()
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tt.wantCode {
				t.Fatalf("exit = %v, want exit code %d; stderr:\n%s", err, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantMsg) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantMsg, stderr.String())
			}
			if strings.Contains(stderr.String(), "goroutine ") || strings.Contains(stderr.String(), "panic") {
				t.Errorf("stderr has a stack trace:\n%s", stderr.String())
			}
		})
	}
}

// --- process helpers ---

func buildBroker(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "kafka-broker")
	start := time.Now()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("go build took %v", time.Since(start).Round(time.Millisecond))
	return bin
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// cleanEnv is the test's environment without KAFKA_* variables, so a developer's
// settings cannot change what the subprocess does.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKA_") {
			env = append(env, kv)
		}
	}
	return env
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type proc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has exited and been waited for
	err    error         // cmd.Wait's result, once done is closed
}

func startBroker(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stderr: new(lockedBuffer), done: make(chan struct{})}
	p.cmd.Env = cleanEnv()
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Kill() // this process only, by its PID
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("broker pid %d did not exit after SIGKILL", p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("broker pid %d stderr:\n%s", p.cmd.Process.Pid, p.stderr.String())
		}
	})
	return p
}

func (p *proc) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		t.Fatalf("broker pid %d did not exit within 30s; stderr:\n%s", p.cmd.Process.Pid, p.stderr.String())
		return nil
	}
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := p.wait(t)
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("broker did not die of SIGKILL: %v; stderr:\n%s", err, p.stderr.String())
	}
}

func (p *proc) terminate(t *testing.T) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("after SIGTERM: %v, want exit 0; stderr:\n%s", err, p.stderr.String())
	}
	t.Logf("graceful stop took %v", time.Since(start).Round(time.Millisecond))
}

// waitReady waits for the ready file and returns the address in it.
func waitReady(t *testing.T, p *proc, path string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-p.done:
			t.Fatalf("broker exited before it was ready: %v; stderr:\n%s", p.err, p.stderr.String())
		case <-deadline:
			t.Fatalf("no ready file %s after 30s; stderr:\n%s", path, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func checkStartLog(t *testing.T, p *proc, addr, dataDir string) {
	t.Helper()
	// The broker logs the line before it writes the ready file, but our copy of its stderr
	// may still be on its way: wait a little for it.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.stderr.String(), "kafka broker started") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		var e struct {
			Msg     string   `json:"msg"`
			Addr    string   `json:"addr"`
			DataDir string   `json:"data_dir"`
			Topics  []string `json:"topics"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Msg != "kafka broker started" {
			continue
		}
		if e.Addr != addr || e.DataDir != dataDir || strings.Join(e.Topics, ",") != testTopic+","+otherTopic {
			t.Errorf("start log line = %s, want addr %s, data_dir %s, topics [%s %s]", line, addr, dataDir, testTopic, otherTopic)
		}
		return
	}
	t.Errorf("no JSON start log line in stderr:\n%s", p.stderr.String())
}

// --- Kafka helpers ---

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.FetchMaxWait(200 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkTopics asks the broker for the topics' metadata, without creating them.
func checkTopics(t *testing.T, addr string, want map[string]int) {
	t.Helper()
	cl := newClient(t, addr)
	req := kmsg.NewPtrMetadataRequest()
	for topic := range want {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(testCtx(t), cl)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	got := map[string]int{}
	for _, rt := range resp.Topics {
		if rt.Topic == nil || rt.ErrorCode != 0 {
			t.Errorf("metadata for topic %q: %v", deref(rt.Topic), kerr.ErrorForCode(rt.ErrorCode))
			continue
		}
		got[*rt.Topic] = len(rt.Partitions)
	}
	for topic, n := range want {
		if got[topic] != n {
			t.Errorf("topic %q has %d partitions, want %d", topic, got[topic], n)
		}
	}
}

// produce writes n records to testTopic synchronously; partition -1 lets the client choose.
func produce(t *testing.T, addr string, n int, partition int32, value func(int) string) {
	t.Helper()
	opts := []kgo.Opt{kgo.DefaultProduceTopic(testTopic)}
	if partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl := newClient(t, addr, opts...)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "k-%d", i), Value: []byte(value(i)), Partition: partition}
	}
	if err := cl.ProduceSync(testCtx(t), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	cl.Close()
}

// poll collects record values until it has want distinct ones or ctx ends.
func poll(ctx context.Context, t *testing.T, cl *kgo.Client, want int) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for len(got) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if ctx.Err() == nil {
				t.Errorf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	return got
}

// consumeGroup reads want records from testTopic in testGroup, commits and leaves the group.
func consumeGroup(t *testing.T, addr string, want int) map[string]bool {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumerGroup(testGroup), kgo.ConsumeTopics(testTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	ctx := testCtx(t)
	start := time.Now()
	got := poll(ctx, t, cl, want)
	t.Logf("group consumer (join + fetch) read %d records in %v", len(got), time.Since(start).Round(time.Millisecond))
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	cl.Close()
	return got
}

// consumeDirect reads testTopic from the start without a group.
func consumeDirect(t *testing.T, addr string, want int) map[string]bool {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(testTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := poll(testCtx(t), t, cl, want)
	// Anything beyond want would be a duplicate or a stray record: give it a moment to show up.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	for k := range poll(ctx, t, cl, 1) {
		got[k] = true
	}
	cl.Close()
	return got
}

// committedTotal sums testGroup's committed offsets on testTopic.
func committedTotal(t *testing.T, addr string) int64 {
	t.Helper()
	cl := newClient(t, addr)
	req := kmsg.NewPtrOffsetFetchRequest()
	g := kmsg.NewOffsetFetchRequestGroup()
	g.Group = testGroup
	rt := kmsg.NewOffsetFetchRequestGroupTopic()
	rt.Topic = testTopic
	for p := range int32(testParts) {
		rt.Partitions = append(rt.Partitions, p)
	}
	g.Topics = append(g.Topics, rt)
	req.Groups = append(req.Groups, g)
	resp, err := req.RequestWith(testCtx(t), cl)
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	if len(resp.Groups) != 1 {
		t.Fatalf("offset fetch response: %+v", resp.Groups)
	}
	if code := resp.Groups[0].ErrorCode; code == kerr.GroupIDNotFound.Code {
		return 0 // kfake's answer for a group it does not know: nothing committed
	} else if code != 0 {
		t.Fatalf("offset fetch: %v", kerr.ErrorForCode(code))
	}
	var total int64
	for _, rt := range resp.Groups[0].Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 {
				t.Fatalf("offset fetch %s/%d: error code %d", rt.Topic, rp.Partition, rp.ErrorCode)
			}
			if rp.Offset > 0 {
				total += rp.Offset
			}
		}
	}
	return total
}

// resumeGroup joins testGroup again: it must see none of the old records, then one new
// record per partition. An old record in a partition would come before that partition's
// new one, so a lost commit on any partition fails the test.
func resumeGroup(t *testing.T, addr string) {
	t.Helper()
	assigned := make(chan struct{}, 1)
	cl := newClient(t, addr, kgo.ConsumerGroup(testGroup), kgo.ConsumeTopics(testTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}))
	ctx := testCtx(t)

	// Poll until the group has assigned us the partitions, then a little longer.
	joinStart := time.Now()
	var old []string
	for joined := false; ; {
		window := 500 * time.Millisecond
		if !joined {
			window = 200 * time.Millisecond
		}
		pctx, cancel := context.WithTimeout(ctx, window)
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { old = append(old, string(r.Value)) })
		cancel()
		if joined {
			break
		}
		select {
		case <-assigned:
			joined = true
			t.Logf("rejoined the group after %v", time.Since(joinStart).Round(time.Millisecond))
		default:
		}
		if ctx.Err() != nil {
			t.Fatal("the consumer was not assigned partitions within 30s")
		}
	}
	if len(old) > 0 {
		t.Fatalf("after restart the group re-read %d old records (first %q): committed offsets were lost", len(old), old[0])
	}

	for p := range int32(testParts) {
		produce(t, addr, 1, p, func(int) string { return fmt.Sprintf("new-%d", p) })
	}
	got := poll(ctx, t, cl, testParts)
	for v := range got {
		if !strings.HasPrefix(v, "new-") {
			t.Errorf("group consumer got old record %q after restart", v)
		}
	}
	for p := range testParts {
		if !got[fmt.Sprintf("new-%d", p)] {
			t.Errorf("group consumer did not get the new record on partition %d", p)
		}
	}
	cl.Close()
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
