package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// procMemory reads a /proc/<pid>/status field given in kB (VmRSS: resident now, VmHWM:
// the peak resident size since the process started) and returns it in MiB.
func procMemory(pid int, field string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	defer f.Close()
	return parseStatusField(bufio.NewScanner(f), field)
}

func parseStatusField(sc *bufio.Scanner, field string) (float64, error) {
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %q: %w", field, rest, err)
		}
		return kb / 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in process status", field)
}

// memory reports field (VmRSS or VmHWM) of each app's first instance and its sidecar,
// named "<label> <app>" and "<label> <app> sidecar". A process that cannot be read is
// left out (it may have just been restarted by a scenario).
func memory(st *stacktest.Stack, field, label string) []Measure {
	var ms []Measure
	for _, id := range stacktest.AllApps {
		in := st.App(id)
		if in == nil {
			continue
		}
		for _, p := range []struct {
			name string
			proc *stacktest.Proc
		}{{id, in.App}, {id + " sidecar", in.Daprd}} {
			if exited, _ := p.proc.Exited(); exited {
				continue
			}
			if v, err := procMemory(p.proc.PID(), field); err == nil {
				ms = append(ms, Measure{label + " " + p.name, "MiB", v})
			}
		}
	}
	return ms
}

// peakMemory is the peak resident size of every app and sidecar so far.
func peakMemory(st *stacktest.Stack) []Measure { return memory(st, "VmHWM", "peak RSS") }

// clockTicks is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTicks = 100

// procCPU returns the CPU time (user and system) process pid has used, in seconds.
func procCPU(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	return parseStatCPU(string(data))
}

func parseStatCPU(stat string) (float64, error) {
	// The command name (field 2) is in parentheses and may hold spaces: count from the
	// last ')'. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed process stat %q", stat)
	}
	fields := strings.Fields(stat[i+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("malformed process stat %q", stat)
	}
	var total float64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed process stat %q: %w", stat, err)
		}
		total += v
	}
	return total / clockTicks, nil
}
