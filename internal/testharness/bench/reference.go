package bench

import (
	"encoding/json"
	"os"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// referenceName is the figure of the reference work (see referenceWork).
const referenceName = "machine: reference work before the run (20,000 events through JSON, one goroutine)"

// referenceRounds is how many events the reference work encodes and decodes.
const referenceRounds = 20000

// referenceWork times a fixed piece of single-threaded work of the kind the stack does
// (a lifecycle event encoded and decoded as JSON, referenceRounds times), taken while the
// stack is idle, right before a run. This shared virtual machine's speed varies by a
// fifth or more from one spell to the next, and every figure of a run moves with it:
// runs whose reference work took different times were taken on a different machine, in
// effect, and their figures compare only with that in mind.
func referenceWork() Measure {
	now := time.Now().UTC()
	ev := task.Event{
		ID: "reference", Version: task.EventVersion, Kind: task.EventCompleted, Time: now, TaskID: uuid.New(),
		Type: "noop", Attempt: 1, Priority: task.PriorityNormal, Worker: "worker-0-0", StartedAt: &now,
		Result: &task.Location{Directory: "bench", Path: "bench/reference.json", Bytes: 2, SHA256: "00"},
	}
	round := func() {
		data, err := json.Marshal(ev)
		if err != nil {
			panic(err) // a fixed value of a fixed type
		}
		var back task.Event
		if err := json.Unmarshal(data, &back); err != nil {
			panic(err)
		}
	}
	for range referenceRounds / 10 { // warm up: code and caches
		round()
	}
	start := time.Now()
	for range referenceRounds {
		round()
	}
	return Measure{Name: referenceName, Unit: "ms", Value: float64(time.Since(start).Microseconds()) / 1000}
}

// machineBefore measures the machine right before a run: the reference work, then what
// a system call and a page fault cost. On this virtual machine (a guest whose kernel
// crossings go through its host) both cost several times what they cost on bare metal,
// and every process of the stack pays them on each request, wake-up and new page: a run's
// CPU per task is to be read with them.
func machineBefore() []Measure {
	return []Measure{referenceWork(), syscallCost(), pageFaultCost()}
}

// The figures of machineBefore's probes.
const (
	syscallName   = "machine: a system call (getppid), mean of 20,000"
	pageFaultName = "machine: a page fault (first write to a new anonymous page), mean of 2,048"
)

// syscallCost is the mean time of the cheapest system call there is.
func syscallCost() Measure {
	const calls = 20000
	start := time.Now()
	for range calls {
		syscall.Getppid()
	}
	return Measure{Name: syscallName, Unit: "µs", Value: float64(time.Since(start).Nanoseconds()) / calls / 1000}
}

// pageFaultCost is the mean time of a write to each page of a new anonymous mapping:
// a page fault, the page's zeroing and its mapping. n/a (0) if the mapping is refused.
func pageFaultCost() Measure {
	const pages = 2048
	size := pages * os.Getpagesize()
	m := Measure{Name: pageFaultName, Unit: "µs"}
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return m
	}
	defer syscall.Munmap(mem)
	start := time.Now()
	for i := 0; i < size; i += os.Getpagesize() {
		mem[i] = 1
	}
	m.Value = float64(time.Since(start).Nanoseconds()) / pages / 1000
	return m
}
