package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// Sidecar calls are counted from each daprd's own Prometheus metrics (daprd v1.18.2,
// pkg/diagnostics), scraped before and after a scenario's window:
//
//   - dapr_component_state_count{operation}: state API calls, HTTP or gRPC (get,
//     bulk_get, set, delete, bulk_delete, transaction, query). Actor state does not
//     go through it.
//   - dapr_component_pubsub_egress_count, dapr_component_pubsub_egress_bulk_count:
//     single publishes and bulk publish calls.
//   - dapr_component_pubsub_ingress_count, dapr_component_pubsub_ingress_bulk_count:
//     topic deliveries to the app, one by one (HTTP or a streaming subscription) or in
//     bulk. (The _bulk_event_count series count calls too, not the events in them:
//     daprd registers them with a Count aggregation.)
//   - dapr_component_output_binding_count: output binding calls (the MySQL binding).
//   - dapr_grpc_io_server_completed_rpcs{grpc_server_method}: every unary gRPC call the
//     sidecar served, from its app (/dapr.proto.runtime.v1.Dapr/...: InvokeActor,
//     GetActorState, ExecuteActorStateTransaction, RegisterActorReminder, ...) and from
//     other sidecars (/dapr.proto.internals.v1.ServiceInvocation/CallActor).
//   - dapr_runtime_service_invocation_req_recv_total: service invocations received from
//     another sidecar (they travel on a stream, CallLocalStream, which the gRPC counter
//     above leaves out).
//   - dapr_http_server_request_count{method,path}: the same over the HTTP API
//     (/v1.0/actors/<type>/{id}/method, /state, /reminders, /timers; /v1.0/invoke/...).
//   - dapr_http_client_completed_count{method,path}: calls the sidecar made to its app
//     over the app channel: actors/<type>/{id}/method/<m> (reminders and timers firing
//     are .../method/remind/<name> and .../method/timer/<name>), and topic routes or
//     invoked methods (/events, /results).
//   - dapr_grpc_io_client_completed_rpcs{grpc_client_method}: calls the sidecar made,
//     here those to the scheduler (/dapr.proto.scheduler.v1.Scheduler/...).
//
// State, publish and binding calls are taken from the component counters only, so a
// call over gRPC is not counted again from the gRPC method counter.

// callRow is one row of the calls table: a kind and what in it.
type callRow struct{ kind, what string }

func (r callRow) name() string {
	if r.what == "" {
		return callsPrefix + r.kind
	}
	return callsPrefix + r.kind + ": " + r.what
}

// What a row counts, for the totals.
const (
	appCall  = iota // a call an app made on its sidecar: in its kind's total and in all app → sidecar calls
	delivery        // work a sidecar brought to its app on its own (a topic delivery, a reminder firing): in its kind's total
	detail          // a call above seen again on its way (forwarded to another sidecar, delivered to the app), or the sidecar's own call to the scheduler: in no total
)

// callRows are the rows of the calls breakdown, in report order, with what they count;
// each kind's total is printed above its first row.
var callRows = []struct {
	callRow
	counts int
}{
	{callRow{"state", "get"}, appCall}, {callRow{"state", "bulk get"}, appCall}, {callRow{"state", "save"}, appCall},
	{callRow{"state", "transaction"}, appCall}, {callRow{"state", "delete"}, appCall}, {callRow{"state", "query"}, appCall},
	{callRow{"state", "actor state get"}, appCall}, {callRow{"state", "actor state transaction"}, appCall},
	{callRow{"actor", "app → sidecar"}, appCall}, {callRow{"actor", "sidecar → sidecar"}, detail}, {callRow{"actor", "sidecar → app"}, detail},
	{callRow{"invoke", "app → sidecar"}, appCall}, {callRow{"invoke", "sidecar → sidecar"}, detail},
	{callRow{"publish", "single"}, appCall}, {callRow{"publish", "bulk"}, appCall},
	{callRow{"reminder", "register"}, appCall}, {callRow{"reminder", "unregister"}, appCall},
	{callRow{"reminder", "timer register/unregister"}, appCall},
	{callRow{"reminder", "fired (sidecar → app)"}, delivery}, {callRow{"reminder", "timer fired (sidecar → app)"}, delivery},
	{callRow{"reminder", "scheduler calls (sidecar → scheduler)"}, detail},
	{callRow{"subscribe", "deliveries"}, delivery}, {callRow{"subscribe", "bulk deliveries"}, delivery},
	{callRow{"binding", "output"}, appCall},
	{callRow{"other", "API (metadata, health, ...)"}, appCall}, {callRow{"other", otherToApp}, detail},
}

// callCounts is a number of calls by row.
type callCounts map[callRow]float64

// stateOps maps dapr_component_state_count's operation label to a row.
var stateOps = map[string]string{
	"get": "get", "bulk_get": "bulk get", "set": "save", "transaction": "transaction",
	"delete": "delete", "bulk_delete": "delete", "query": "query",
}

// runtimeMethods maps the gRPC methods of dapr.proto.runtime.v1.Dapr that are not
// counted by a component counter to a row; any other method is "other".
var runtimeMethods = map[string]callRow{
	"InvokeActor":                  {"actor", "app → sidecar"},
	"GetActorState":                {"state", "actor state get"},
	"ExecuteActorStateTransaction": {"state", "actor state transaction"},
	"InvokeService":                {"invoke", "app → sidecar"},
	"RegisterActorReminder":        {"reminder", "register"},
	"UnregisterActorReminder":      {"reminder", "unregister"},
	"RegisterActorTimer":           {"reminder", "timer register/unregister"},
	"UnregisterActorTimer":         {"reminder", "timer register/unregister"},
}

// componentCounted are the gRPC API methods whose calls a component counter counts.
var componentCounted = []string{
	"GetState", "GetBulkState", "SaveState", "DeleteState", "DeleteBulkState", "ExecuteStateTransaction",
	"QueryStateAlpha1", "QueryState", "PublishEvent", "BulkPublishEvent", "BulkPublishEventAlpha1", "InvokeBinding",
}

// classify says which row a series of a daprd's metrics counts, if any.
func classify(name string, labels map[string]string) (callRow, bool) {
	switch name {
	case "dapr_component_state_count":
		if what, ok := stateOps[labels["operation"]]; ok {
			return callRow{"state", what}, true
		}
		return callRow{"other", "API (metadata, health, ...)"}, true
	case "dapr_component_pubsub_egress_count":
		return callRow{"publish", "single"}, true
	case "dapr_component_pubsub_egress_bulk_count":
		return callRow{"publish", "bulk"}, true
	case "dapr_component_pubsub_ingress_count":
		return callRow{"subscribe", "deliveries"}, true
	case "dapr_component_pubsub_ingress_bulk_count":
		return callRow{"subscribe", "bulk deliveries"}, true
	case "dapr_runtime_service_invocation_req_recv_total":
		return callRow{"invoke", "sidecar → sidecar"}, true
	case "dapr_component_output_binding_count":
		return callRow{"binding", "output"}, true
	case "dapr_grpc_io_server_completed_rpcs":
		return classifyGRPC(labels["grpc_server_method"])
	case "dapr_grpc_io_client_completed_rpcs":
		if strings.HasPrefix(labels["grpc_client_method"], "/dapr.proto.scheduler.v1.Scheduler/") {
			return callRow{"reminder", "scheduler calls (sidecar → scheduler)"}, true
		}
	case "dapr_http_server_request_count":
		return classifyHTTPServer(labels["method"], labels["path"])
	case "dapr_http_client_completed_count":
		return classifyHTTPClient(labels["path"]), true
	}
	return callRow{}, false
}

func classifyGRPC(method string) (callRow, bool) {
	service, m, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	switch service {
	case "dapr.proto.runtime.v1.Dapr":
		if r, ok := runtimeMethods[m]; ok {
			return r, true
		}
		if slices.Contains(componentCounted, m) {
			return callRow{}, false
		}
		return callRow{"other", "API (metadata, health, ...)"}, true
	case "dapr.proto.internals.v1.ServiceInvocation":
		switch {
		case strings.HasPrefix(m, "CallActorReminder"):
			return callRow{}, false // counted where it reaches the app
		case strings.HasPrefix(m, "CallActor"):
			return callRow{"actor", "sidecar → sidecar"}, true
		}
	}
	return callRow{}, false // health checks, the app's own streams
}

// classifyHTTPServer sorts the sidecar's HTTP API calls. Paths are daprd's metric labels,
// e.g. /v1.0/actors/TaskQueue/{id}/method (ids and keys are cut off).
func classifyHTTPServer(method, path string) (callRow, bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 || !strings.HasPrefix(parts[0], "v1") {
		return callRow{"other", "API (metadata, health, ...)"}, true
	}
	switch parts[1] {
	case "state", "publish", "bindings":
		return callRow{}, false // component counters
	case "invoke":
		return callRow{"invoke", "app → sidecar"}, true
	case "actors":
		if len(parts) < 5 {
			break
		}
		switch parts[4] {
		case "method":
			return callRow{"actor", "app → sidecar"}, true
		case "state":
			if method == "GET" {
				return callRow{"state", "actor state get"}, true
			}
			return callRow{"state", "actor state transaction"}, true
		case "reminders":
			if method == "DELETE" {
				return callRow{"reminder", "unregister"}, true
			}
			if method == "GET" {
				break
			}
			return callRow{"reminder", "register"}, true
		case "timers":
			return callRow{"reminder", "timer register/unregister"}, true
		}
	}
	return callRow{"other", "API (metadata, health, ...)"}, true
}

// classifyHTTPClient sorts the calls a sidecar made to its app: actors/<type>/<id>/method/<m>,
// .../method/remind/<name>, .../method/timer/<name>, and anything else (topic routes,
// /dapr/subscribe, /dapr/config).
func classifyHTTPClient(path string) callRow {
	p := "/" + strings.Trim(path, "/") + "/"
	switch {
	case strings.HasPrefix(p, "/actors/") && strings.Contains(p, "/method/remind/"):
		return callRow{"reminder", "fired (sidecar → app)"}
	case strings.HasPrefix(p, "/actors/") && strings.Contains(p, "/method/timer/"):
		return callRow{"reminder", "timer fired (sidecar → app)"}
	case strings.HasPrefix(p, "/actors/") && strings.Contains(p, "/method/"):
		return callRow{"actor", "sidecar → app"}
	}
	return callRow{"other", otherToApp}
}

// otherToApp are the calls of a sidecar to its app that are not actor calls: topic
// deliveries (also counted as subscribe deliveries), service invocations, /dapr/subscribe.
const otherToApp = "sidecar → app (topic routes, invocations, ...)"

// parseSeries splits a series key of stacktest.Metrics (`name{a="b",c="d"}`) into its
// name and labels, undoing Prometheus's escapes in the values.
func parseSeries(series string) (string, map[string]string, error) {
	name, rest, ok := strings.Cut(series, "{")
	labels := map[string]string{}
	if !ok {
		return series, labels, nil
	}
	if !strings.HasSuffix(rest, "}") {
		return "", nil, fmt.Errorf("series %q: no closing brace", series)
	}
	rest = rest[:len(rest)-1]
	for rest != "" {
		key, after, ok := strings.Cut(rest, `="`)
		if !ok {
			return "", nil, fmt.Errorf("series %q: malformed labels", series)
		}
		var value strings.Builder
		i := 0
		for ; i < len(after) && after[i] != '"'; i++ {
			if after[i] == '\\' && i+1 < len(after) {
				i++
				switch after[i] {
				case 'n':
					value.WriteByte('\n')
				default:
					value.WriteByte(after[i])
				}
				continue
			}
			value.WriteByte(after[i])
		}
		if i == len(after) {
			return "", nil, fmt.Errorf("series %q: unterminated label value", series)
		}
		labels[strings.TrimSpace(key)] = value.String()
		rest = strings.TrimPrefix(after[i+1:], ",")
	}
	return name, labels, nil
}

// countCalls adds up, by row, how much each series grew from before to after (one
// sidecar's two scrapes). A counter that went down belongs to a restarted sidecar:
// all of its value is new.
func countCalls(before, after stacktest.Metrics, into callCounts) error {
	for series, v := range after {
		name, labels, err := parseSeries(series)
		if err != nil {
			return err
		}
		row, ok := classify(name, labels)
		if !ok {
			continue
		}
		into[row] += growth(before[series], v)
	}
	return nil
}

// growth is how much a counter grew from one scrape to the next. A counter that went down
// belongs to a sidecar that restarted in between: all of its value is new.
func growth(before, after float64) float64 {
	if d := after - before; d >= 0 {
		return d
	}
	return after
}

// callMeasures reports calls per task of every row and each kind's total (the "calls"
// breakdown), and every call an app made on its sidecar (the main table).
func callMeasures(c callCounts, tasks int) []Measure {
	per := func(v float64) float64 { return v / float64(max(tasks, 1)) }
	kindTotal := map[string]float64{}
	var all float64
	for _, r := range callRows {
		if r.counts != detail {
			kindTotal[r.kind] += c[r.callRow]
		}
		if r.counts == appCall {
			all += c[r.callRow]
		}
	}
	var ms []Measure
	seen := map[string]bool{}
	for _, r := range callRows {
		if !seen[r.kind] {
			seen[r.kind] = true
			ms = append(ms, Measure{Name: callRow{kind: r.kind}.name(), Unit: "calls", Value: per(kindTotal[r.kind])})
		}
		ms = append(ms, Measure{Name: r.name(), Unit: "calls", Value: per(c[r.callRow])})
	}
	return append(ms, Measure{Name: appCallsName, Unit: "calls", Value: per(all)})
}

// appCallsName is the figure of every call an app made on its sidecar, per task.
const appCallsName = "calls per task: all app → sidecar calls"

// sidecarScrape is the metrics of every running sidecar of the stack, by its metrics URL.
type sidecarScrape map[string]stacktest.Metrics

// scrapeSidecars reads the metrics of every running sidecar of the stack.
func scrapeSidecars(ctx context.Context, st *stacktest.Stack) (sidecarScrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out := sidecarScrape{}
	for _, id := range stacktest.AllApps {
		for _, in := range st.Apps(id) {
			if in.Daprd == nil {
				continue
			}
			if exited, _ := in.Daprd.Exited(); exited {
				continue
			}
			base := in.MetricsURL()
			m, err := stacktest.ScrapeMetrics(ctx, base)
			if err != nil {
				return nil, fmt.Errorf("metrics of %s's sidecar: %w", in.Name, err)
			}
			out[base] = m
		}
	}
	return out, nil
}

// callsBetween counts the calls of every sidecar between two scrapes. A sidecar found
// only in the later scrape started in between and counts whole.
func callsBetween(before, after sidecarScrape) (callCounts, error) {
	c := callCounts{}
	for base, m := range after {
		if err := countCalls(before[base], m, c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// dumpDeltas writes, for each sidecar, every series that grew between the scrapes and
// by how much, sorted, to dir/<address>.txt (TASKGRID_BENCH_METRICS_DIR; each window
// replaces the files of the one before): to see what the classification above works from.
func dumpDeltas(dir string, before, after sidecarScrape) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for base, m := range after {
		var lines []string
		for series, v := range m {
			if d := v - before[base][series]; d != 0 {
				lines = append(lines, fmt.Sprintf("%s %g", series, d))
			}
		}
		slices.Sort(lines)
		name := strings.NewReplacer("http://", "", ":", "-").Replace(base) + ".txt"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// window measures what the stack spent between its start and its end: CPU by process
// group, sidecar calls by kind and their latencies.
type window struct {
	st      *stacktest.Stack
	cpu     *cpuWindow
	metrics sidecarScrape // at the start
	after   sidecarScrape // at the end
	intake  intake        // the analytics apps' intake at the start
}

func startWindow(ctx context.Context, st *stacktest.Stack) (*window, error) {
	m, err := scrapeSidecars(ctx, st)
	if err != nil {
		return nil, err
	}
	in, err := scrapeIntake(ctx, st)
	if err != nil {
		return nil, err
	}
	return &window{st: st, cpu: startCPU(st), metrics: m, intake: in}, nil
}

// end returns the CPU used by the stack's processes (seconds, by group), by the
// benchmark's own process and by the machine, and the sidecar calls made, since start.
func (w *window) end(ctx context.Context) (cpuSpent, callCounts, error) {
	cpu := w.cpu.stop()
	m, err := scrapeSidecars(ctx, w.st)
	if err != nil {
		return cpuSpent{}, nil, err
	}
	w.after = m
	if dir := os.Getenv("TASKGRID_BENCH_METRICS_DIR"); dir != "" {
		if err := dumpDeltas(dir, w.metrics, m); err != nil {
			return cpuSpent{}, nil, err
		}
	}
	calls, err := callsBetween(w.metrics, m)
	return cpu, calls, err
}
