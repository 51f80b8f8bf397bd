package main

import (
	"os"
	"runtime"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/appserver"
	"github.com/taskgrid/taskgrid/internal/platform/env"
)

// Config is the worker's configuration.
type Config struct {
	appserver.Config
	// Retention is how long a finished task's record is kept (TASK_RETENTION, default
	// taskstore.RetentionDefault; 0: for ever): see taskstore.WithRetention.
	Retention time.Duration
	// NodeID names this worker node; its slots are "<NodeID>-<i>". Keep it stable across
	// restarts (a host name, a StatefulSet pod name). Defaults to the host name.
	NodeID string
	// PoolSize is how many worker slots (tasks at once) this node adds to the pool.
	// Defaults to the number of CPUs.
	PoolSize int
	// Prefetch is how many attempts the node holds beyond its slots, taken from the
	// queue in order: a slot that frees starts the next at once, without a round trip
	// to the queue. A task re-queued at high priority goes ahead of everything still
	// in the queue, but not of the attempts already in a node's buffer. Defaults to
	// PoolSize; 0 turns the buffer off (strict order of dispatch).
	Prefetch int
	// PrefetchHorizon lets the buffer hold more than Prefetch attempts while tasks are
	// short: as many as the node starts in this time at its recent pace (at most 64).
	// A task re-queued at high priority then waits behind about this much work per
	// node at most. Defaults to 250ms; 0 keeps the buffer at Prefetch.
	PrefetchHorizon time.Duration
	// SyncGap is the least time between two syncs of a busy node (one with as many
	// ended attempts to report as it has slots): under load, a node reports what ended
	// and takes new work in rounds of SyncGap, so that one sync, one turn of the queue
	// actor, carries a round's work and every batch after it grows. Work submitted
	// meanwhile waits for the next round, unless the queue pushes it. A node that needs
	// work syncs at once; a quiet node's changes ride its heartbeat. Defaults to 100ms;
	// lower it for lower latency under load at more CPU per task (0: no rounds, a sync
	// at every change). At most PrefetchHorizon's worth of work is taken per round, and
	// the wait ends early when the slots run dry while work may wait in the queue.
	SyncGap time.Duration
	// StoreSpacing is the least time between the starts of two calls of results to the
	// storekeeper that follow one another (the results of the second gathered while
	// the first was on its way): under load each call carries about this long's worth
	// of a node's results, so the storekeeper's write, record transaction and publish
	// serve more of them at once. A lone result goes at once. Defaults to
	// StoreSpacingDefault; 0 turns it off.
	StoreSpacing time.Duration
	// HeldResultsMax and HeldBytesMax bound the results this node holds computed and not
	// stored yet before a slot that has finished waits with its result instead of taking
	// the next task (the storekeeper away, or its disk full): the queue backs up instead
	// of the node's memory. Default to 256 results and 64 MiB.
	HeldResultsMax int
	HeldBytesMax   int
	// DrainTimeout bounds how long a stopping worker waits for running attempts before
	// giving them back to the queue. Defaults to 30s.
	DrainTimeout time.Duration
	// FaultRate is the share of attempts whose worker process "dies" at the end of the
	// task, before storing the result, like a kill -9: the attempt vanishes without a
	// word and only the queue's lease notices. For demonstrations of recovery; 0 in production.
	FaultRate float64
}

// Load reads the configuration from the environment.
func Load(getenv func(string) string) (Config, error) {
	r := env.New(getenv)
	host, _ := os.Hostname()
	cfg := Config{
		Config:       appserver.LoadConfig(r, "worker", 8081),
		NodeID:       r.Valid("NODE_ID", host, task.ValidNode, "1-100 letters, digits, '-', '_' or '.'"),
		PoolSize:     r.Int("POOL_SIZE", runtime.NumCPU(), 1, 1024),
		DrainTimeout: r.Duration("DRAIN_TIMEOUT", 30*time.Second, 0, time.Hour),
		FaultRate:    r.Float("WORKER_FAULT_RATE", 0, 0, 1),
		Retention:    taskstore.LoadRetention(r),
	}
	cfg.HeldResultsMax = r.Int("HELD_RESULTS_MAX", HeldResultsMaxDefault, 1, 1<<20)
	cfg.HeldBytesMax = r.Int("HELD_RESULTS_MAX_BYTES", HeldBytesMaxDefault, 1, 1<<40)
	cfg.Prefetch = r.Int("PREFETCH", cfg.PoolSize, 0, 4096)
	cfg.PrefetchHorizon = r.Duration("PREFETCH_HORIZON", PrefetchHorizonDefault, 0, 10*time.Second)
	cfg.SyncGap = r.Duration("SYNC_GAP", SyncGapDefault, 0, queue.HeartbeatInterval)
	cfg.StoreSpacing = r.Duration("STORE_SPACING", StoreSpacingDefault, 0, time.Second)
	return cfg, r.Err()
}

// Slots are the ids of the worker slots this node adds to the pool.
func (c Config) Slots() []string {
	slots := make([]string, c.PoolSize)
	for i := range slots {
		slots[i] = task.SlotName(c.NodeID, i)
	}
	return slots
}
