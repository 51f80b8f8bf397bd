package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// Where a task's time goes, leg by leg: the mean time of each kind of call on its way, from
// the latency histograms of every daprd (v1.18.2, pkg/diagnostics; milliseconds), over the
// same window as the calls breakdown. A leg's time includes the legs it waits for (an actor
// call from an app includes the sidecar-to-sidecar call and the app's turn at the other
// end). At light load the legs are what a task waits for; under load they include queueing.
//
// The machine's own share: a round trip between two processes on loopback (the bench and
// Redis, PING) back to back and after 10 ms of quiet. A process that has slept is woken by
// the kernel, and on a virtual machine an idle virtual CPU first by its host: the second
// figure, less the first, is what each hop of a lightly loaded stack pays on top of its work.

// hopRow is one leg: the histogram metric and the labels of its series.
type hopRow struct {
	name   string
	metric string
	labels []string
}

var hopRows = []hopRow{
	{"app → sidecar, actor call (enqueue, push, sync), until answered", "dapr_grpc_io_server_server_latency", []string{`grpc_server_method="/dapr.proto.runtime.v1.Dapr/InvokeActor"`}},
	{"sidecar → sidecar, actor call (push, sync), until answered", "dapr_grpc_io_client_roundtrip_latency", []string{`grpc_client_method="/dapr.proto.internals.v1.ServiceInvocation/CallActor"`}},
	{"app → sidecar, invoke (results to the storekeeper), until answered", "dapr_grpc_io_server_server_latency", []string{`grpc_server_method="/dapr.proto.runtime.v1.Dapr/InvokeService"`}},
	{"sidecar → app, the storekeeper's POST /results (files, fsyncs, record, publish)", "dapr_http_client_roundtrip_latency", []string{`path="/results"`}},
	{"sidecar → app, the gateway's event feed (to the SSE streams)", "dapr_http_client_roundtrip_latency", []string{`path="/internal/events"`}},
	{"sidecar → app, analytics' events", "dapr_http_client_roundtrip_latency", []string{`path="/events"`}},
	{"sidecar → Redis, state transaction", "dapr_component_state_latencies", []string{`operation="transaction"`}},
	{"sidecar → Redis, bulk get", "dapr_component_state_latencies", []string{`operation="bulk_get"`}},
	{"sidecar → broker, bulk publish", "dapr_component_pubsub_egress_bulk_latencies", nil},
}

// The legs' names contain no ": ", which the breakdown table reads as "kind: what".
const hopsPrefix = "latency by leg: "

// hopMeasures reports the mean of every leg with calls in the window.
func hopMeasures(before, after sidecarScrape) []Measure {
	var ms []Measure
	for _, r := range hopRows {
		var sum, count float64
		for base, m := range after {
			b := before[base]
			sum += delta(b, m, r.metric+"_sum", r.labels)
			count += delta(b, m, r.metric+"_count", r.labels)
		}
		if count > 0 {
			ms = append(ms, Measure{Name: hopsPrefix + r.name, Unit: "ms", Value: sum / count})
		}
	}
	return ms
}

// delta is how much the series of name with labels grew from before to after (a sidecar
// not scraped before, nil, sums to 0).
func delta(before, after stacktest.Metrics, name string, labels []string) float64 {
	return growth(before.Sum(name, labels...), after.Sum(name, labels...))
}

// wakeups measures a PING round trip to Redis, back to back and after 10 ms of quiet,
// 50 of each, and reports their medians.
func wakeups(ctx context.Context, redisAddr string) ([]Measure, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", redisAddr)
	if err != nil {
		return nil, fmt.Errorf("redis for the wake-up probe: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	r := bufio.NewReader(conn)
	ping := func() (time.Duration, error) {
		start := time.Now()
		if _, err := conn.Write([]byte("PING\r\n")); err != nil {
			return 0, err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if strings.TrimSpace(line) != "+PONG" {
			return 0, fmt.Errorf("PING answered %q", line)
		}
		return time.Since(start), nil
	}
	median := func(gap time.Duration) (float64, error) {
		rtts := make([]time.Duration, 50)
		for i := range rtts {
			time.Sleep(gap)
			rtt, err := ping()
			if err != nil {
				return 0, fmt.Errorf("wake-up probe: %w", err)
			}
			rtts[i] = rtt
		}
		return Millis(Quantile(rtts, 0.5)), nil
	}
	busy, err := median(0)
	if err != nil {
		return nil, err
	}
	idle, err := median(10 * time.Millisecond)
	if err != nil {
		return nil, err
	}
	return []Measure{
		{Name: "machine: loopback round trip to another process (Redis PING), back to back, p50", Unit: "ms", Value: busy},
		{Name: "machine: the same after 10 ms of quiet, p50", Unit: "ms", Value: idle},
	}, nil
}
