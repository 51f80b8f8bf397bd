package bench

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// CPU groups, in report order: the processes of the stack by role. Every instance of an
// app (two worker nodes, say) adds to its group. "total" is their sum.
var cpuGroups = []string{
	"gateway app", "gateway daprd",
	"worker apps", "worker daprds",
	"storekeeper app", "storekeeper daprd",
	"analytics app", "analytics daprd",
	"redis", "kafka broker", "scheduler", "placement", "mariadb",
}

// serviceGroup is the CPU group of an infrastructure process (stacktest's service name).
func serviceGroup(name string) string {
	if name == "kafka" {
		return "kafka broker"
	}
	return name
}

// appGroup is the CPU group of an app's process, or of its sidecar.
func appGroup(id string, sidecar bool) string {
	plural := ""
	if id == "worker" {
		plural = "s"
	}
	if sidecar {
		return id + " daprd" + plural
	}
	return id + " app" + plural
}

// procCPUSample is the CPU time one process of the stack had used when sampled.
type procCPUSample struct {
	group string
	pid   int
	cpu   float64 // seconds, user + system
}

// cpuSnapshot is the CPU time of every running process of the stack at one moment.
type cpuSnapshot []procCPUSample

// groupedProc is one process of the stack and its CPU group.
type groupedProc struct {
	group string
	proc  *stacktest.Proc
}

// stackProcs lists every running process of the stack (stacktest's Procs) with its
// CPU group: an app instance's process or sidecar by app id, anything else (the
// infrastructure) by its service name.
func stackProcs(st *stacktest.Stack) []groupedProc {
	ofApp := map[*stacktest.Proc]string{}
	for _, id := range stacktest.AllApps {
		for _, in := range st.Apps(id) {
			ofApp[in.App] = appGroup(id, false)
			ofApp[in.Daprd] = appGroup(id, true)
		}
	}
	var out []groupedProc
	for _, p := range st.Procs() {
		g, ok := ofApp[p]
		if !ok {
			g = serviceGroup(p.Name)
		}
		out = append(out, groupedProc{g, p})
	}
	return out
}

// takeCPU reads the CPU time of every running process of the stack.
func takeCPU(st *stacktest.Stack) cpuSnapshot {
	var s cpuSnapshot
	for _, p := range stackProcs(st) {
		if v, err := procCPU(p.proc.PID()); err == nil {
			s = append(s, procCPUSample{p.group, p.proc.PID(), v})
		}
	}
	return s
}

// cpuUsed is the CPU time, in seconds by group, used between two snapshots. A process
// seen only in the later one started in between and counts whole; one seen only in
// the earlier one ended in between and its last part is lost (no scenario that
// measures CPU restarts a process).
func cpuUsed(before, after cpuSnapshot) map[string]float64 {
	type key struct {
		group string
		pid   int
	}
	was := map[key]float64{}
	for _, s := range before {
		was[key{s.group, s.pid}] = s.cpu
	}
	out := map[string]float64{}
	for _, g := range cpuGroups {
		out[g] = 0
	}
	for _, s := range after {
		out[s.group] += max(s.cpu-was[key{s.group, s.pid}], 0)
	}
	return out
}

// cpuTotal is the sum over the groups.
func cpuTotal(used map[string]float64) float64 {
	var total float64
	for _, v := range used {
		total += v
	}
	return total
}

// cpuMeasures reports ms of CPU per task of every group (the "cpu" breakdown), their
// total ("all processes of the stack", in the main table), and the benchmark's own process
// (the clients: not in the total).
func cpuMeasures(used map[string]float64, self, machine float64, tasks int) []Measure {
	per := func(s float64) float64 { return s * 1000 / float64(max(tasks, 1)) }
	groups := slices.Clone(cpuGroups)
	for g := range used {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups[len(cpuGroups):])
	var ms []Measure
	for _, g := range groups {
		ms = append(ms, Measure{Name: cpuPrefix + g, Unit: "ms", Value: per(used[g])})
	}
	return append(ms,
		Measure{Name: cpuTotalName, Unit: "ms", Value: per(cpuTotal(used))},
		Measure{Name: cpuPrefix + "bench clients (not in the total)", Unit: "ms", Value: per(self)},
		Measure{Name: cpuPrefix + cpuOthersName, Unit: "ms", Value: per(max(machine-cpuTotal(used)-self, 0))})
}

// cpuOthersName is the figure of the machine's CPU that neither the stack's processes nor
// the clients used: the kernel's own threads (write-back of the stack's files, for one:
// a syncfs hands it to them), anything else running.
const cpuOthersName = "kernel threads, other processes (not in the total)"

// machineCPU is the CPU time every core of the machine has spent busy (user, nice,
// system, interrupts; not idle, I/O wait or steal), in seconds, from /proc/stat.
func machineCPU() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	v, _ := parseMachineCPU(string(data))
	return v
}

// parseMachineCPU reads the busy time of the "cpu" line of /proc/stat (clock ticks of
// 1/100 s, as in parseStatCPU).
func parseMachineCPU(stat string) (float64, error) {
	line, _, _ := strings.Cut(stat, "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0, fmt.Errorf("malformed /proc/stat line %q", line)
	}
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat line %q: %w", line, err)
		}
		busy += v
	}
	return busy / 100, nil
}

// cpuTotalName is the figure of CPU per task over every process of the stack.
const cpuTotalName = "CPU per task (all processes of the stack)"

// selfCPU is the CPU time the benchmark's own process has used, in seconds.
func selfCPU() float64 {
	v, err := procCPU(os.Getpid())
	if err != nil {
		return 0
	}
	return v
}

// cpuWindow measures the stack's CPU between start and stop.
type cpuWindow struct {
	st      *stacktest.Stack
	before  cpuSnapshot
	self    float64
	machine float64
}

func startCPU(st *stacktest.Stack) *cpuWindow {
	return &cpuWindow{st: st, before: takeCPU(st), self: selfCPU(), machine: machineCPU()}
}

// cpuSpent is what a window measured: CPU seconds by group of the stack's processes, of
// the benchmark itself (the clients) and of the whole machine.
type cpuSpent struct {
	used          map[string]float64
	self, machine float64
}

// stop returns the CPU used by group, by the benchmark itself and by the machine since
// start.
func (w *cpuWindow) stop() cpuSpent {
	return cpuSpent{cpuUsed(w.before, takeCPU(w.st)), selfCPU() - w.self, machineCPU() - w.machine}
}
