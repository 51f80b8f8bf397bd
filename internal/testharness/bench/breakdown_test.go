package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// scrapeFixture serves testdata/<name> (daprd-metrics.txt: the counters of a worker's
// sidecar; daprd-latency.txt: the latency histograms of real sidecars) as a daprd metrics
// port would and scrapes it with the stack's own scraper.
func scrapeFixture(t *testing.T, name string) stacktest.Metrics {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(text) }))
	defer srv.Close()
	m, err := stacktest.ScrapeMetrics(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseSeries(t *testing.T) {
	name, labels, err := parseSeries(`dapr_http_client_completed_count{app_id="worker",method="PUT",path="actors/W/{id}/method/run",status="200"}`)
	if err != nil || name != "dapr_http_client_completed_count" || labels["path"] != "actors/W/{id}/method/run" || labels["status"] != "200" || len(labels) != 4 {
		t.Errorf("got %q %v %v", name, labels, err)
	}
	name, labels, err = parseSeries(`m{a="x\"y,z=w",b="back\\slash",c=""}`)
	if err != nil || name != "m" || labels["a"] != `x"y,z=w` || labels["b"] != `back\slash` || labels["c"] != "" {
		t.Errorf("escapes: got %q %v %v", name, labels, err)
	}
	if name, labels, err := parseSeries("go_goroutines"); err != nil || name != "go_goroutines" || len(labels) != 0 {
		t.Errorf("no labels: got %q %v %v", name, labels, err)
	}
	for _, bad := range []string{`m{a="x"`, `m{a}`, `m{a="x}`} {
		if _, _, err := parseSeries(bad); err == nil {
			t.Errorf("parseSeries(%q) gave no error", bad)
		}
	}
}

// want is what testdata/daprd-metrics.txt counts, row by row (zero rows left out).
var want = callCounts{
	{"state", "get"}: 154, {"state", "bulk get"}: 3, {"state", "save"}: 153, {"state", "transaction"}: 2,
	{"state", "actor state get"}: 6, {"state", "actor state transaction"}: 5,
	// InvokeActor over gRPC (both statuses) and the HTTP API's actor method route.
	{"actor", "app → sidecar"}: 51 + 4, {"actor", "sidecar → sidecar"}: 153, {"actor", "sidecar → app"}: 153,
	{"invoke", "app → sidecar"}: 153, {"invoke", "sidecar → sidecar"}: 8,
	// The HTTP API's publish and state calls are in the component counters already.
	{"publish", "single"}: 153, {"publish", "bulk"}: 4,
	{"reminder", "register"}: 153 + 1, {"reminder", "unregister"}: 153 + 1,
	{"reminder", "fired (sidecar → app)"}: 2, {"reminder", "timer fired (sidecar → app)"}: 1,
	{"reminder", "scheduler calls (sidecar → scheduler)"}: 306,
	{"subscribe", "deliveries"}:                           10, {"subscribe", "bulk deliveries"}: 5,
	{"binding", "output"}:                    7,
	{"other", "API (metadata, health, ...)"}: 2, {"other", otherToApp}: 9,
}

func TestCountCallsFromDaprdMetrics(t *testing.T) {
	after := scrapeFixture(t, "daprd-metrics.txt")
	got := callCounts{}
	if err := countCalls(nil, after, got); err != nil {
		t.Fatal(err)
	}
	for row, n := range want {
		if got[row] != n {
			t.Errorf("%s = %v, want %v", row.name(), got[row], n)
		}
	}
	for row, n := range got {
		if _, ok := want[row]; !ok && n != 0 {
			t.Errorf("unexpected row %s = %v", row.name(), n)
		}
	}

	// Between two scrapes only the growth counts; a counter that went down belongs to a
	// restarted sidecar and counts whole.
	before := stacktest.Metrics{}
	for series, v := range after {
		before[series] = v
	}
	saves := `dapr_grpc_io_server_completed_rpcs{app_id="worker",grpc_server_method="/dapr.proto.runtime.v1.Dapr/InvokeService",grpc_server_status="OK"}`
	gets := `dapr_component_state_count{app_id="worker",component="statestore",namespace="",operation="get",success="true"}`
	before[saves] = 150
	before[gets] = 1000
	delta := callCounts{}
	if err := countCalls(before, after, delta); err != nil {
		t.Fatal(err)
	}
	if delta[callRow{"invoke", "app → sidecar"}] != 3 || delta[callRow{"state", "get"}] != 154 || delta[callRow{"state", "save"}] != 0 {
		t.Errorf("deltas: invoke %v (want 3), state get %v (want 154, reset), save %v (want 0)",
			delta[callRow{"invoke", "app → sidecar"}], delta[callRow{"state", "get"}], delta[callRow{"state", "save"}])
	}

	// Two sidecars add up; one seen only in the later scrape counts whole.
	c, err := callsBetween(sidecarScrape{"a": before}, sidecarScrape{"a": after, "b": after})
	if err != nil {
		t.Fatal(err)
	}
	if c[callRow{"invoke", "app → sidecar"}] != 3+153 {
		t.Errorf("two sidecars: invoke %v, want %v", c[callRow{"invoke", "app → sidecar"}], 3+153)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		row    callRow
		ok     bool
	}{
		{"dapr_component_state_count", map[string]string{"operation": "bulk_delete"}, callRow{"state", "delete"}, true},
		{"dapr_component_state_count", map[string]string{"operation": "query"}, callRow{"state", "query"}, true},
		{"dapr_grpc_io_server_completed_rpcs", map[string]string{"grpc_server_method": "/dapr.proto.runtime.v1.Dapr/SaveState"}, callRow{}, false},
		{"dapr_grpc_io_server_completed_rpcs", map[string]string{"grpc_server_method": "/dapr.proto.runtime.v1.Dapr/BulkPublishEventAlpha1"}, callRow{}, false},
		{"dapr_grpc_io_server_completed_rpcs", map[string]string{"grpc_server_method": "/dapr.proto.runtime.v1.Dapr/RegisterActorTimer"}, callRow{"reminder", "timer register/unregister"}, true},
		{"dapr_grpc_io_server_completed_rpcs", map[string]string{"grpc_server_method": "/grpc.health.v1.Health/Check"}, callRow{}, false},
		{"dapr_grpc_io_client_completed_rpcs", map[string]string{"grpc_client_method": "/dapr.proto.internals.v1.ServiceInvocation/CallActor"}, callRow{}, false},
		{"dapr_http_server_request_count", map[string]string{"method": "GET", "path": "/v1.0/actors/Q/{id}/state"}, callRow{"state", "actor state get"}, true},
		{"dapr_http_server_request_count", map[string]string{"method": "PUT", "path": "/v1.0/actors/Q/{id}/state"}, callRow{"state", "actor state transaction"}, true},
		{"dapr_http_server_request_count", map[string]string{"method": "POST", "path": "/v1.0/actors/Q/{id}/timers"}, callRow{"reminder", "timer register/unregister"}, true},
		{"dapr_http_server_request_count", map[string]string{"method": "POST", "path": "/v1.0/invoke/storekeeper/method/results"}, callRow{"invoke", "app → sidecar"}, true},
		{"dapr_http_server_request_count", map[string]string{"method": "POST", "path": "/v1.0-alpha1/publish/bulk/pubsub/t"}, callRow{}, false},
		{"dapr_http_server_request_count", map[string]string{"method": "GET", "path": ""}, callRow{"other", "API (metadata, health, ...)"}, true},
		{"dapr_http_client_completed_count", map[string]string{"path": "/actors/Q/{id}/method/remind/r"}, callRow{"reminder", "fired (sidecar → app)"}, true},
		{"dapr_component_pubsub_egress_bulk_event_count", nil, callRow{}, false},
		{"dapr_component_state_latencies_count", map[string]string{"operation": "get"}, callRow{}, false},
	}
	for _, tt := range tests {
		row, ok := classify(tt.name, tt.labels)
		if row != tt.row || ok != tt.ok {
			t.Errorf("classify(%s, %v) = %v, %v; want %v, %v", tt.name, tt.labels, row, ok, tt.row, tt.ok)
		}
	}
}

func TestCallMeasures(t *testing.T) {
	ms := callMeasures(want, 2)
	byName := map[string]float64{}
	for _, m := range ms {
		if _, dup := byName[m.Name]; dup {
			t.Errorf("figure %q twice", m.Name)
		}
		byName[m.Name] = m.Value
	}
	// Every row and every kind's total is reported, zero or not: runs must have the same figures.
	if len(ms) != len(callRows)+8+1 {
		t.Errorf("%d figures, want %d rows + 8 kinds + the total", len(ms), len(callRows))
	}
	half := func(v float64) float64 { return v / 2 }
	checks := map[string]float64{
		"calls per task: state":                half(154 + 3 + 153 + 2 + 6 + 5),
		"calls per task: state: delete":        0,
		"calls per task: actor":                half(55), // forwarded and delivered copies are not new calls
		"calls per task: invoke":               half(153),
		"calls per task: publish":              half(157),
		"calls per task: reminder":             half(154 + 154 + 2 + 1), // fired counts; scheduler calls do not
		"calls per task: subscribe":            half(15),
		"calls per task: binding":              half(7),
		"calls per task: other":                half(2),
		"calls per task: actor: sidecar → app": half(153),
		// Only calls apps make on their sidecars: no deliveries, no forwarded copies.
		appCallsName: half(323 + 55 + 153 + 157 + 308 + 7 + 2),
	}
	for name, v := range checks {
		got, ok := byName[name]
		if !ok || math.Abs(got-v) > 1e-9 {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
	for _, m := range ms {
		wantBreakdown := BreakdownCalls
		if m.Name == appCallsName {
			wantBreakdown = ""
		}
		if breakdownOf(m.Name) != wantBreakdown {
			t.Errorf("%s: breakdown %q, want %q", m.Name, breakdownOf(m.Name), wantBreakdown)
		}
	}
}

func TestCPUUsedByGroup(t *testing.T) {
	before := cpuSnapshot{
		{"gateway app", 10, 1.0, 100}, {"worker apps", 11, 2.0, 10}, {"worker apps", 12, 3.0, 20}, {"redis", 13, 5.0, 7},
		{"scheduler", 14, 1.0, 3}, // ends in the window: its last part is lost
	}
	after := cpuSnapshot{
		{"gateway app", 10, 1.5, 400}, {"worker apps", 11, 2.25, 60}, {"worker apps", 12, 3.25, 70}, {"redis", 13, 5.0, 7},
		{"worker daprds", 20, 0.75, 40}, // started in the window: counts whole
		{"sentry", 21, 0.5, 5},          // a service no group names: its own group
	}
	used := cpuUsed(before, after)
	wantUsed := map[string]float64{"gateway app": 0.5, "worker apps": 0.5, "worker daprds": 0.75, "redis": 0, "scheduler": 0, "sentry": 0.5}
	for g, v := range wantUsed {
		if math.Abs(used[g]-v) > 1e-9 {
			t.Errorf("%s used %v s, want %v", g, used[g], v)
		}
	}
	for _, g := range cpuGroups {
		if _, ok := used[g]; !ok {
			t.Errorf("group %s missing (every group is reported, zero or not)", g)
		}
	}
	ms := cpuMeasures(used, 0.25, 3.0, 100) // the machine: 0.5 s more than the stack and the clients
	sum, total, outside := splitBreakdown(t, ms, cpuTotalName, BreakdownCPU)
	if v := outside[cpuPrefix+cpuOthersName]; math.Abs(v-5) > 1e-9 {
		t.Errorf("kernel threads and others %v ms per task, want 5", v)
	}
	if v := outside[cpuPrefix+clientsName]; v != 2.5 {
		t.Errorf("bench clients %v ms per task, want 2.5", v)
	}
	if math.Abs(total-22.5) > 1e-9 || math.Abs(sum-total) > 1e-9 {
		t.Errorf("total %v ms per task, groups add up to %v; want 22.5 both", total, sum)
	}
	if ms[len(ms)-4].Name != "CPU per task: sentry" {
		t.Errorf("an unknown group comes after the known ones: %v", ms[len(ms)-4].Name)
	}

	// Context switches are counted by group the same way, per task, with the clients'
	// own beside the total and not in it.
	switches := switchesUsed(before, after)
	wantSwitches := map[string]float64{"gateway app": 300, "worker apps": 100, "worker daprds": 40, "redis": 0, "scheduler": 0, "sentry": 5}
	for g, v := range wantSwitches {
		if switches[g] != v {
			t.Errorf("%s made %v context switches, want %v", g, switches[g], v)
		}
	}
	switchSum, switchTotal, switchOutside := splitBreakdown(t, switchMeasures(switches, 50, 100), switchesTotalName, BreakdownSwitches)
	if v := switchOutside[switchesPrefix+clientsName]; v != 0.5 {
		t.Errorf("bench clients %v switches per task, want 0.5", v)
	}
	if math.Abs(switchTotal-4.45) > 1e-9 || math.Abs(switchSum-switchTotal) > 1e-9 {
		t.Errorf("total %v switches per task, groups add up to %v; want 4.45 both", switchTotal, switchSum)
	}
}

// splitBreakdown checks that every measure of ms but its total (named totalName, in the
// main table) is in breakdown, and returns the sum of the rows in the total, the total,
// and the rows outside it (the clients, the machine's others) by name.
func splitBreakdown(t *testing.T, ms []Measure, totalName, breakdown string) (sum, total float64, outside map[string]float64) {
	t.Helper()
	outside = map[string]float64{}
	for _, m := range ms {
		switch {
		case m.Name == totalName:
			total = m.Value
			if breakdownOf(m.Name) != "" {
				t.Errorf("%s belongs in the main table", m.Name)
			}
			continue
		case strings.Contains(m.Name, "not in the total"):
			outside[m.Name] = m.Value
		default:
			sum += m.Value
		}
		if breakdownOf(m.Name) != breakdown {
			t.Errorf("%s is not in the %s breakdown", m.Name, breakdown)
		}
	}
	return sum, total, outside
}

func TestParseSwitches(t *testing.T) {
	status := "Name:\tdaprd\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1200\nnonvoluntary_ctxt_switches:\t34\n"
	if got, err := parseSwitches(status); err != nil || got != 1234 {
		t.Errorf("parseSwitches = %v, %v; want 1234", got, err)
	}
	for _, bad := range []string{
		"Name:\tdaprd\nvoluntary_ctxt_switches:\t1200\n", // one of the two
		"voluntary_ctxt_switches:\tmany\nnonvoluntary_ctxt_switches:\t34\n",
	} {
		if _, err := parseSwitches(bad); err == nil {
			t.Errorf("parseSwitches(%q) gave no error", bad)
		}
	}
}

// Every thread's switches are counted, not only the main thread's (which is all
// /proc/<pid>/status holds): 20 sleeps on a thread of its own that is not the main
// thread add at least 20 to the count beyond the main thread's.
func TestProcSwitchesOfThisProcess(t *testing.T) {
	pid := os.Getpid()
	leader := func() float64 {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		n, err := parseSwitches(string(data))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before, err := procSwitches(pid)
	if err != nil {
		t.Fatal(err)
	}
	leaderBefore := leader()
	slept := make(chan bool)
	release := make(chan struct{})
	defer close(release)
	for range 10 { // until a goroutine gets a thread that is not the main one
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if syscall.Gettid() == pid {
				slept <- false
				<-release // holds the main thread, so that the next one gets another
				return
			}
			for range 20 {
				time.Sleep(time.Millisecond)
			}
			slept <- true
		}()
		if <-slept {
			break
		}
	}
	after, err := procSwitches(pid)
	if err != nil {
		t.Fatal(err)
	}
	if others := (after - before) - (leader() - leaderBefore); others < 20 {
		t.Errorf("20 sleeps on another thread counted %v context switches beyond the main thread's, want 20 at least", others)
	}
}

func TestParseMachineCPU(t *testing.T) {
	for _, tt := range []struct {
		name, stat string
		want       float64
		wantErr    bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice: busy is user,
		// nice, system, irq and softirq (guest time is in user already).
		{"busy without idle, I/O wait and steal", "cpu  1000 20 300 9000 400 5 75 600 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n", 14, false},
		{"not the cpu line first", "cpu0 1 2 3 4 5 6 7 8\n", 0, true},
		{"too short", "cpu 1 2 3\n", 0, true},
		{"not a number", "cpu 1 2 x 4 5 6 7 8\n", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMachineCPU(tt.stat)
			if (err != nil) != tt.wantErr || math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("parseMachineCPU = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if v := machineCPU(); v <= 0 {
		t.Errorf("machineCPU() = %v: this machine has been busy since it booted", v)
	}
}

func TestCPUGroups(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{appGroup("worker", false), "worker apps"}, {appGroup("worker", true), "worker daprds"},
		{appGroup("gateway", false), "gateway app"}, {appGroup("storekeeper", true), "storekeeper daprd"},
		{serviceGroup("kafka"), "kafka broker"}, {serviceGroup("mariadb"), "mariadb"},
	} {
		if tt.got != tt.want {
			t.Errorf("group %q, want %q", tt.got, tt.want)
		}
	}
	for _, g := range []string{appGroup("analytics", false), appGroup("analytics", true), serviceGroup("redis"), serviceGroup("placement"), serviceGroup("scheduler")} {
		found := false
		for _, known := range cpuGroups {
			found = found || known == g
		}
		if !found {
			t.Errorf("group %q is not in cpuGroups", g)
		}
	}
}

func TestSustained(t *testing.T) {
	// 10 s offered at 100/s, sampled every 100 ms.
	samples := func(backlog func(s float64) float64) []backlogSample {
		var out []backlogSample
		for i := 0; i <= 100; i++ {
			s := float64(i) / 10
			b := backlog(s)
			out = append(out, backlogSample{at: time.Duration(i) * 100 * time.Millisecond, backlog: int64(b), finished: int64(100*s - b)})
		}
		return out
	}
	first, last, growth, ratio, ok := sustained(samples(func(float64) float64 { return 5 }), 100)
	if !ok || growth != 0 || math.Abs(ratio-1) > 1e-9 || first.backlog != 5 || last.backlog != 5 || first.at != time.Second {
		t.Errorf("steady: first %+v last %+v growth %v ratio %v ok %v", first, last, growth, ratio, ok)
	}
	// Completing 60/s of 100/s: the backlog grows 40/s.
	first, last, growth, ratio, ok = sustained(samples(func(s float64) float64 { return 40 * s }), 100)
	if ok || math.Abs(growth-40) > 1e-6 || math.Abs(ratio-0.6) > 1e-6 || first.backlog != 40 || last.backlog != 400 {
		t.Errorf("falling behind: first %+v last %+v growth %v ratio %v ok %v", first, last, growth, ratio, ok)
	}
	if _, _, _, _, ok := sustained(nil, 100); ok {
		t.Error("no samples judged sustained")
	}
	// The quick paced-light run: 10/s for 3 s, every task done within 20 ms, the last one
	// submitted as the last sample is taken. One task in flight is not a growing backlog;
	// two more than at the start are, over so short a run.
	light := func(end int64) []backlogSample {
		var out []backlogSample
		for i := int64(0); i <= 30; i++ {
			out = append(out, backlogSample{at: time.Duration(i) * 100 * time.Millisecond, finished: i})
		}
		out[30].backlog = end // submitted on top of the 30 done
		return out
	}
	if _, _, growth, _, ok := sustained(light(1), 10); !ok {
		t.Errorf("light run ending with one task in flight judged not sustained (growth %v)", growth)
	}
	if _, _, growth, _, ok := sustained(light(2), 10); ok {
		t.Errorf("light run ending with two tasks more waiting judged sustained (growth %v)", growth)
	}
}

func TestCompareWithRiverAndReport(t *testing.T) {
	figs := []Figure{
		Summarize("burst", "throughput", "tasks/s", []float64{40, 50, 45}),
		Summarize("burst", "submit→notified p50", "ms", []float64{3000, 4000, 5000}),
		Summarize("burst", "submit→notified p99", "ms", []float64{6000}),
		Summarize("burst", cpuTotalName, "ms", []float64{36}),
		Summarize("peer-river", "throughput", "jobs/s", []float64{1000, 1600, 1500}),
		Summarize("peer-river", "insert→done p50", "ms", []float64{1000}),
		Summarize("peer-river", "insert→done p99", "ms", []float64{2000}),
		Summarize("peer-river", peerCPUName, "ms", []float64{4}),
	}
	vs := compareWithRiver(figs)
	if len(vs) != 4 {
		t.Fatalf("%d ratios, want 4: %+v", len(vs), vs)
	}
	if f := vs[0]; f.Scenario != "vs-river" || f.Median != 45.0/1500 || f.Min != 40.0/1600 || f.Max != 50.0/1000 {
		t.Errorf("throughput ratio %+v", f)
	}
	if vs[1].Median != 4 || vs[2].Median != 3 || vs[3].Median != 9 {
		t.Errorf("ratios %v %v %v, want 4 3 9", vs[1].Median, vs[2].Median, vs[3].Median)
	}
	if got := compareWithRiver(figs[:4]); len(got) != 0 {
		t.Errorf("without River: %+v", got)
	}

	// The report prints every figure once, breakdowns in their tables, and the JSON
	// carries the same figures with their breakdown.
	cpu := cpuMeasures(map[string]float64{"gateway app": 1, "redis": 0.5}, 0.1, 2, 100)
	calls := callMeasures(want, 100)
	for _, m := range append(cpu, calls...) {
		f := Summarize("burst", m.Name, m.Unit, []float64{m.Value})
		f.Breakdown = breakdownOf(m.Name)
		figs = append(figs, f)
	}
	figs = append(figs, vs...)
	rep := &Report{Config: QuickConfig(), Figures: figs, Scenarios: []ScenarioInfo{
		{Name: "burst", Describe: "a burst"},
		{Name: "peer-river", Describe: "River", Settings: []Setting{{"FetchCooldown", "1ms"}, {"workers", "8"}}},
		{Name: "vs-river", Describe: "ratios", Settings: []Setting{{"FetchCooldown", "1ms"}, {"workers", "8"}}},
	}}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	table := b.String()
	for _, s := range []string{
		"CPU per task by process", "gateway app", "15.0", "total", // 1.5 s over 100 tasks
		"Sidecar calls per task by kind", "  actor state get", "all app → sidecar calls",
		"FetchCooldown: 1ms", "River's settings:", "throughput, taskgrid / River", "45.0 tasks/s", "1500 jobs/s", "0.030×",
	} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
	// A breakdown figure is not repeated in the main table.
	if strings.Count(table, "gateway app") != 1 {
		t.Errorf("gateway app printed %d times:\n%s", strings.Count(table, "gateway app"), table)
	}
	path := filepath.Join(t.TempDir(), "results.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Figures) != len(figs) {
		t.Fatalf("JSON has %d figures, report %d", len(back.Figures), len(figs))
	}
	for i, f := range back.Figures {
		if f.Name != figs[i].Name || f.Breakdown != figs[i].Breakdown || f.Median != figs[i].Median {
			t.Errorf("JSON figure %d = %+v, want %+v", i, f, figs[i])
		}
	}
	if len(back.Scenarios[1].Settings) != 2 {
		t.Errorf("JSON settings %+v", back.Scenarios[1].Settings)
	}
}

func TestPeerArgsAndMeasures(t *testing.T) {
	c := DefaultConfig()
	args := strings.Join(peerArgs(c, "postgres://x", 42), " ")
	for _, s := range []string{"-jobs 10000", "-workers 8", "-clients 32", "-fetch-cooldown 1ms", "-fetch-poll-interval 50ms", "-postgres-pid 42", "-dsn postgres://x"} {
		if !strings.Contains(args, s) {
			t.Errorf("peer args %q lack %q", args, s)
		}
	}
	ms := riverMeasures(riverResult{Jobs: 1000, JobsPerSecond: 1500, P50Millis: 10, P99Millis: 20, MaxMillis: 30, CPUSeconds: 1, PostgresCPU: 2})
	if ms[0].Value != 1500 || ms[4].Name != peerCPUName || ms[4].Value != 3 || ms[6].Value != 2 {
		t.Errorf("river measures %+v", ms)
	}
	set := riverSettings(riverResult{RiverVersion: "v0.51.2", PgxVersion: "v5.13.0", Workers: 8, FetchCooldown: "1ms", FetchPollInterval: "50ms"}, "15.18")
	joined := ""
	for _, s := range set {
		joined += s.Name + "=" + s.Value + ";"
	}
	for _, s := range []string{"River=v0.51.2", "FetchCooldown=1ms", "FetchPollInterval=50ms", "workers=8", "PostgreSQL=15.18"} {
		if !strings.Contains(joined, s) {
			t.Errorf("settings %q lack %q", joined, s)
		}
	}
}

func TestPostgresBinOverride(t *testing.T) {
	t.Setenv("TASKGRID_PG_BIN", "/opt/pg/bin")
	if d, err := postgresBin(); err != nil || d != "/opt/pg/bin" {
		t.Errorf("postgresBin = %q, %v", d, err)
	}
}

// TestRiverPeer starts PostgreSQL, builds the peer and runs a small burst on it. It
// needs Debian's PostgreSQL (make bench installs it, make test does not): it runs only
// with TASKGRID_BENCH_PEER_TEST=1.
func TestRiverPeer(t *testing.T) {
	if os.Getenv("TASKGRID_BENCH_PEER_TEST") != "1" || testing.Short() {
		t.Skip("set TASKGRID_BENCH_PEER_TEST=1 to run the River peer against PostgreSQL")
	}
	p, err := startPeer(t.Context(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	pid, dir := p.pg.pid(), p.pg.dir
	defer func() {
		// stop ends PostgreSQL and keeps its files (Run removes them when the benchmark
		// ends: see the comment there); close removes them.
		p.stop()
		if err := syscallKill0(pid); err == nil {
			t.Errorf("postgres (pid %d) still running after stop", pid)
		}
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("stop removed PostgreSQL's directory: %v", err)
		}
		p.close(false)
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("PostgreSQL's directory %s left after close: %v", dir, err)
		}
	}()
	c := QuickConfig()
	c.BurstTasks = 200
	r, err := p.run(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Jobs != 200 || r.Workers != 8 || r.JobsPerSecond <= 0 || r.P50Millis <= 0 || r.P99Millis < r.P50Millis || r.PostgresCPU <= 0 || r.RiverVersion == "unknown" {
		t.Errorf("peer result %+v", r)
	}
	t.Logf("River: %+v", r)
}

// syscallKill0 is kill(pid, 0): nil while the process exists.
func syscallKill0(pid int) error { return syscall.Kill(pid, 0) }

func TestWatchFollowsTheStream(t *testing.T) {
	long := strings.Repeat("x", 10_000) // a line longer than the reader's buffer
	streams := map[string]string{
		"ok": ": hello\n\nevent: started\ndata: {\"id\":\"ok\"}\n\n" +
			"event: progress\ndata: {\"note\":\"" + long + "\"}\n\n" +
			"id: 3\nevent: completed\ndata: {\"id\":\"ok\",\"status\":\"completed\",\ndata: \"started_at\":\"2026-12-04T01:00:00Z\",\"finished_at\":\"2026-12-04T01:00:02Z\",\"result\":{\"path\":\"p\"}}\n\n",
		"cut":       "event: started\ndata: {}\n\n",
		"no-result": "event: completed\ndata: {\"started_at\":\"2026-12-04T01:00:00Z\"}\n\n",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v1/tasks/"), "/events")
		body, ok := streams[id]
		if !ok || r.Header.Get("Accept") != "text/event-stream" {
			http.Error(w, "no such task", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, part := range strings.SplitAfter(body, "\n\n") { // one event per write
			io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	gw := stacktest.Gateway{Base: srv.URL}
	submitted := time.Now()
	got, err := watch(t.Context(), gw, "ok", timing{submitted: submitted})
	if err != nil {
		t.Fatal(err)
	}
	if !got.started.Equal(time.Date(2026, 12, 4, 1, 0, 0, 0, time.UTC)) || !got.finished.Equal(time.Date(2026, 12, 4, 1, 0, 2, 0, time.UTC)) ||
		got.notified.Before(submitted) || got.submitted != submitted {
		t.Errorf("timing %+v", got)
	}
	for id, want := range map[string]string{"cut": "without a completion (events [started]", "no-result": "without start or finish time or result", "missing": "404"} {
		if _, err := watch(t.Context(), gw, id, timing{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", id, err, want)
		}
	}
}

func TestOfferKeepsTheRate(t *testing.T) {
	var submits, records int
	start := time.Now()
	// 300 at 1,000/s: 0.3 s, even when a wake-up is late (the sleep below).
	err := offer(t.Context(), start, 300, 1000, func() {
		submits++
		if submits == 100 {
			time.Sleep(20 * time.Millisecond)
		}
	}, func() { records++ })
	took := time.Since(start)
	if err != nil || submits != 300 {
		t.Fatalf("%d submits, %v", submits, err)
	}
	if took < 299*time.Millisecond || took > 600*time.Millisecond {
		t.Errorf("300 submits at 1,000/s took %s", took)
	}
	if records < 2 || records > 4 {
		t.Errorf("%d samples in %s, want one every 100 ms", records, took)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := offer(ctx, time.Now(), 10, 1, func() {}, func() {}); err == nil {
		t.Error("a cancelled offer gave no error")
	}
}

func TestHopMeasures(t *testing.T) {
	after := scrapeFixture(t, "daprd-latency.txt")
	means := func(before, after sidecarScrape) map[string]float64 {
		got := map[string]float64{}
		for _, m := range hopMeasures(before, after) {
			if m.Unit != "ms" || breakdownOf(m.Name) != BreakdownHops {
				t.Errorf("%q: unit %q, breakdown %q", m.Name, m.Unit, breakdownOf(m.Name))
			}
			got[m.Name] = m.Value
		}
		return got
	}
	// Every leg is read from series daprd really prints.
	whole := means(sidecarScrape{}, sidecarScrape{"a": after})
	for _, r := range hopRows {
		if _, ok := whole[hopsPrefix+r.name]; !ok {
			t.Errorf("leg %q: no series of %s %v in daprd's metrics", r.name, r.metric, r.labels)
		}
	}
	results := hopsPrefix + "sidecar → app, the storekeeper's POST /results (files, fsyncs, record, publish)"
	sum := `dapr_http_client_roundtrip_latency_sum{app_id="storekeeper",method="POST",path="/results",status="200"}`
	count := `dapr_http_client_roundtrip_latency_count{app_id="storekeeper",method="POST",path="/results",status="200"}`
	if after[sum] == 0 || after[count] == 0 {
		t.Fatalf("the fixture lacks %s", sum)
	}
	if want := after[sum] / after[count]; math.Abs(whole[results]-want) > 1e-9 {
		t.Errorf("POST /results mean = %v, want %v", whole[results], want)
	}

	// Only the growth between the scrapes counts: 10 calls of 3 ms since the first.
	before := stacktest.Metrics{}
	for s, v := range after {
		before[s] = v
	}
	before[sum], before[count] = after[sum]-30, after[count]-10
	grown := means(sidecarScrape{"a": before}, sidecarScrape{"a": after})
	if math.Abs(grown[results]-3) > 1e-9 {
		t.Errorf("POST /results mean of the growth = %v, want 3", grown[results])
	}
	if len(grown) != 1 {
		t.Errorf("legs without calls in the window are reported: %v", grown)
	}
	// A sidecar that restarted in between (its sums went down) counts whole.
	before[sum], before[count] = after[sum]+100, after[count]+50
	if got := means(sidecarScrape{"a": before}, sidecarScrape{"a": after}); math.Abs(got[results]-whole[results]) > 1e-9 {
		t.Errorf("restarted sidecar: POST /results mean = %v, want %v", got[results], whole[results])
	}

	var b bytes.Buffer
	f := Summarize("paced-light", results, "ms", []float64{7.9})
	f.Breakdown = breakdownOf(f.Name)
	rep := &Report{Config: QuickConfig(), Figures: []Figure{f}}
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Latency by leg") || !strings.Contains(b.String(), "the storekeeper's POST /results") {
		t.Errorf("the table lacks the latency breakdown:\n%s", b.String())
	}
}

// The wake-up probe reads Redis's answers; anything but PONG is an error, not a figure.
func TestWakeups(t *testing.T) {
	serve := func(answer string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
				if _, err := c.Write([]byte(answer)); err != nil {
					return
				}
			}
		}()
		return ln.Addr().String()
	}
	ms, err := wakeups(t.Context(), serve("+PONG\r\n"))
	if err != nil || len(ms) != 2 {
		t.Fatalf("wakeups = %v, %v; want two figures", ms, err)
	}
	for _, m := range ms {
		if m.Value <= 0 || m.Unit != "ms" {
			t.Errorf("%s = %v %s", m.Name, m.Value, m.Unit)
		}
	}
	if _, err := wakeups(t.Context(), serve("-NOAUTH Authentication required.\r\n")); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("an error answer gave %v, want it reported", err)
	}
}
