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

// procCPUSample is the CPU time one process of the stack had used when sampled, and the
// context switches its threads had made.
type procCPUSample struct {
	group    string
	pid      int
	cpu      float64 // seconds, user + system
	switches float64 // voluntary and not, every thread (see procSwitches)
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

// takeCPU reads the CPU time and context switches of every running process of the
// stack. A process whose switches cannot be read counts none.
func takeCPU(st *stacktest.Stack) cpuSnapshot {
	var s cpuSnapshot
	for _, p := range stackProcs(st) {
		if v, err := procCPU(p.proc.PID()); err == nil {
			sw, _ := procSwitches(p.proc.PID())
			s = append(s, procCPUSample{p.group, p.proc.PID(), v, sw})
		}
	}
	return s
}

// cpuUsed is the CPU time, in seconds by group, used between two snapshots. A process
// seen only in the later one started in between and counts whole; one seen only in
// the earlier one ended in between and its last part is lost (no scenario that
// measures CPU restarts a process).
func cpuUsed(before, after cpuSnapshot) map[string]float64 {
	return usedByGroup(before, after, func(s procCPUSample) float64 { return s.cpu })
}

// switchesUsed is the context switches, by group, made between two snapshots, counted
// as cpuUsed counts CPU time.
func switchesUsed(before, after cpuSnapshot) map[string]float64 {
	return usedByGroup(before, after, func(s procCPUSample) float64 { return s.switches })
}

// usedByGroup is how much the counter value of the processes grew between two
// snapshots, summed by group (every group of cpuGroups present, zero or not).
func usedByGroup(before, after cpuSnapshot, value func(procCPUSample) float64) map[string]float64 {
	type key struct {
		group string
		pid   int
	}
	was := map[key]float64{}
	for _, s := range before {
		was[key{s.group, s.pid}] = value(s)
	}
	out := map[string]float64{}
	for _, g := range cpuGroups {
		out[g] = 0
	}
	for _, s := range after {
		out[s.group] += max(value(s)-was[key{s.group, s.pid}], 0)
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
	ms := byGroup(cpuPrefix, "ms", used, per)
	return append(ms,
		Measure{Name: cpuTotalName, Unit: "ms", Value: per(cpuTotal(used))},
		Measure{Name: cpuPrefix + clientsName, Unit: "ms", Value: per(self)},
		Measure{Name: cpuPrefix + cpuOthersName, Unit: "ms", Value: per(max(machine-cpuTotal(used)-self, 0))})
}

// switchMeasures reports the context switches per task of every group (the "switches"
// breakdown), their total (in the main table) and the benchmark's own process's. On a
// virtual machine each costs the host's work as well as the kernel's (README,
// "Benchmarks"), so where a task's switches happen is where it waits and pays.
func switchMeasures(used map[string]float64, self float64, tasks int) []Measure {
	per := func(n float64) float64 { return n / float64(max(tasks, 1)) }
	ms := byGroup(switchesPrefix, "switches", used, per)
	return append(ms,
		Measure{Name: switchesTotalName, Unit: "switches", Value: per(cpuTotal(used))},
		Measure{Name: switchesPrefix + clientsName, Unit: "switches", Value: per(self)})
}

// byGroup is a measure per group of used, named prefix and the group, with its value
// through per: the groups of cpuGroups in their order, then any other in name order.
func byGroup(prefix, unit string, used map[string]float64, per func(float64) float64) []Measure {
	groups := slices.Clone(cpuGroups)
	for g := range used {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups[len(cpuGroups):])
	ms := make([]Measure, 0, len(groups))
	for _, g := range groups {
		ms = append(ms, Measure{Name: prefix + g, Unit: unit, Value: per(used[g])})
	}
	return ms
}

// clientsName is the row of the benchmark's own process (the clients) in a breakdown.
const clientsName = "bench clients (not in the total)"

// switchesTotalName is the figure of context switches per task over every process of
// the stack.
const switchesTotalName = "context switches per task (all processes of the stack)"

// procSwitches is the context switches, voluntary and not, that every thread of process
// pid has made (a thread that has ended is no longer counted: Go processes keep theirs).
func procSwitches(pid int) (float64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	threads, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("context switches of process %d: %w", pid, err)
	}
	var total float64
	for _, th := range threads {
		data, err := os.ReadFile(dir + "/" + th.Name() + "/status")
		if err != nil {
			continue // the thread ended since the listing
		}
		n, err := parseSwitches(string(data))
		if err != nil {
			return 0, fmt.Errorf("context switches of process %d: %w", pid, err)
		}
		total += n
	}
	return total, nil
}

// parseSwitches adds up voluntary_ctxt_switches and nonvoluntary_ctxt_switches of a
// thread's status.
func parseSwitches(status string) (float64, error) {
	var total float64
	found := 0
	for line := range strings.Lines(status) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "voluntary_ctxt_switches" && name != "nonvoluntary_ctxt_switches") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %q: %w", name, strings.TrimSpace(value), err)
		}
		total += v
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("status has %d of the 2 context switch counts", found)
	}
	return total, nil
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

// selfSwitches is the context switches the benchmark's own process has made.
func selfSwitches() float64 {
	v, _ := procSwitches(os.Getpid())
	return v
}

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
	st           *stacktest.Stack
	before       cpuSnapshot
	self         float64
	selfSwitches float64
	machine      float64
}

func startCPU(st *stacktest.Stack) *cpuWindow {
	return &cpuWindow{st: st, before: takeCPU(st), self: selfCPU(), selfSwitches: selfSwitches(), machine: machineCPU()}
}

// cpuSpent is what a window measured: CPU seconds by group of the stack's processes, of
// the benchmark itself (the clients) and of the whole machine, and the context switches
// by group and of the benchmark itself.
type cpuSpent struct {
	used          map[string]float64
	self, machine float64
	switches      map[string]float64
	selfSwitches  float64
}

// stop returns what was used by group, by the benchmark itself and by the machine since
// start.
func (w *cpuWindow) stop() cpuSpent {
	after := takeCPU(w.st)
	return cpuSpent{
		used: cpuUsed(w.before, after), self: selfCPU() - w.self, machine: machineCPU() - w.machine,
		switches: switchesUsed(w.before, after), selfSwitches: selfSwitches() - w.selfSwitches,
	}
}
