// Command river is the benchmark's peer: the same burst of no-op jobs as taskgrid's burst
// scenario, on River (riverqueue/river with its pgx v5 driver) and a PostgreSQL it is
// given. It lives in a module of its own so that taskgrid's go.mod does not carry River.
//
// It migrates River's schema, empties river_job, starts a client with -workers workers on
// the default queue, then -clients goroutines insert -jobs no-op jobs, one Insert (one
// transaction) per job, as taskgrid's clients submit one task per HTTP request. A job is
// done when its completion event arrives from the client's subscription (the job is then
// marked completed in the database). It prints one JSON object on stdout: jobs per second
// from the first insert to the last completion, insert → done p50, p99 and max, the CPU
// time this process used in that window, and River's settings.
//
//	river -dsn postgres://postgres@127.0.0.1:5432/postgres -jobs 10000 -workers 8
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// NoopArgs is the job: it does nothing, like taskgrid's noop task type.
type NoopArgs struct{}

func (NoopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[NoopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[NoopArgs]) error { return nil }

// Result is what one run printed.
type Result struct {
	RiverVersion      string  `json:"river_version"`
	PgxVersion        string  `json:"pgx_version"`
	Jobs              int     `json:"jobs"`
	Workers           int     `json:"workers"`
	Clients           int     `json:"clients"`
	PoolMaxConns      int32   `json:"pool_max_conns"`
	FetchCooldown     string  `json:"fetch_cooldown"`
	FetchPollInterval string  `json:"fetch_poll_interval"`
	ElapsedSeconds    float64 `json:"elapsed_s"`
	JobsPerSecond     float64 `json:"jobs_per_s"`
	P50Millis         float64 `json:"insert_to_done_p50_ms"`
	P99Millis         float64 `json:"insert_to_done_p99_ms"`
	MaxMillis         float64 `json:"insert_to_done_max_ms"`
	CPUSeconds        float64 `json:"cpu_s"`          // this process (client and workers), in the window
	PostgresCPU       float64 `json:"postgres_cpu_s"` // -postgres-pid and its children, in the window
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "river peer:", err)
		os.Exit(1)
	}
}

func run() error {
	dsn := flag.String("dsn", "", "PostgreSQL connection string (loopback)")
	jobs := flag.Int("jobs", 10000, "no-op jobs in the burst")
	workers := flag.Int("workers", 8, "MaxWorkers of the default queue")
	clients := flag.Int("clients", 32, "goroutines inserting, one job per Insert")
	cooldown := flag.Duration("fetch-cooldown", river.FetchCooldownDefault, "River's FetchCooldown")
	poll := flag.Duration("fetch-poll-interval", river.FetchPollIntervalDefault, "River's FetchPollInterval")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	pgPID := flag.Int("postgres-pid", 0, "PID of the postmaster: its CPU time and its children's in the window are reported")
	flag.Parse()
	if *dsn == "" || *jobs < 1 || *workers < 1 || *clients < 1 {
		return errors.New("-dsn is required; -jobs, -workers and -clients must be at least 1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	pcfg, err := pgxpool.ParseConfig(*dsn)
	if err != nil {
		return fmt.Errorf("parse -dsn: %w", err)
	}
	// Every inserting goroutine gets a connection, and River its own few (producer,
	// completer, notifier, maintenance): the pool's default (4 on 2 cores) would be
	// the bottleneck instead of River.
	pcfg.MaxConns = int32(*clients + 8)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	driver := riverpgxv5.New(pool)

	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: quiet()})
	if err != nil {
		return err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate river's schema: %w", err)
	}
	// Each run starts from an empty table, as the first did.
	if _, err := pool.Exec(ctx, "TRUNCATE river_job"); err != nil {
		return fmt.Errorf("empty river_job: %w", err)
	}

	ws := river.NewWorkers()
	river.AddWorker(ws, noopWorker{})
	client, err := river.NewClient(driver, &river.Config{
		Logger:            quiet(),
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: *workers}},
		Workers:           ws,
		FetchCooldown:     *cooldown,
		FetchPollInterval: *poll,
	})
	if err != nil {
		return err
	}
	// A buffer for every completion: River drops events a full channel cannot take.
	events, unsubscribe := client.SubscribeConfig(&river.SubscribeConfig{
		Kinds: []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed}, ChanSize: *jobs + 100,
	})
	defer unsubscribe()
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("start river: %w", err)
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer scancel()
		_ = client.Stop(sctx)
	}()
	// Open every connection the inserting clients will use (a new PostgreSQL backend
	// each) before the burst, and let the producer take its queue and listen for inserts.
	conns := make([]*pgxpool.Conn, 0, *clients)
	for range *clients {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	time.Sleep(500 * time.Millisecond)

	done := make(map[int64]time.Time, *jobs)
	collected := make(chan error, 1)
	go func() {
		for len(done) < *jobs {
			select {
			case ev := <-events:
				if ev.Kind != river.EventKindJobCompleted {
					collected <- fmt.Errorf("job %d: %s (%v)", ev.Job.ID, ev.Kind, ev.Job.Errors)
					return
				}
				done[ev.Job.ID] = time.Now()
			case <-ctx.Done():
				collected <- fmt.Errorf("%d of %d jobs completed: %w", len(done), *jobs, ctx.Err())
				return
			}
		}
		collected <- nil
	}()

	var mu sync.Mutex
	inserted := make(map[int64]time.Time, *jobs)
	var insertErr error
	next := make(chan struct{})
	var wg sync.WaitGroup
	cpuBefore, pgBefore := cpuSeconds(), postgresCPU(*pgPID)
	start := time.Now()
	for range *clients {
		wg.Go(func() {
			for range next {
				at := time.Now()
				res, err := client.Insert(ctx, NoopArgs{}, nil)
				mu.Lock()
				if err != nil && insertErr == nil {
					insertErr = err
				} else if err == nil {
					inserted[res.Job.ID] = at
				}
				mu.Unlock()
			}
		})
	}
	for range *jobs {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	if insertErr != nil {
		return fmt.Errorf("insert: %w", insertErr)
	}
	if err := <-collected; err != nil {
		return err
	}
	cpu, pgCPU := cpuSeconds()-cpuBefore, postgresCPU(*pgPID)-pgBefore

	var last time.Time
	lat := make([]time.Duration, 0, *jobs)
	for id, at := range done {
		in, ok := inserted[id]
		if !ok {
			return fmt.Errorf("job %d completed but was not inserted by this run", id)
		}
		lat = append(lat, at.Sub(in))
		if at.After(last) {
			last = at
		}
	}
	elapsed := last.Sub(start).Seconds()
	out := Result{
		RiverVersion: moduleVersion("github.com/riverqueue/river"), PgxVersion: moduleVersion("github.com/jackc/pgx/v5"),
		Jobs: *jobs, Workers: *workers, Clients: *clients, PoolMaxConns: pcfg.MaxConns,
		FetchCooldown: cooldown.String(), FetchPollInterval: poll.String(),
		ElapsedSeconds: elapsed, JobsPerSecond: float64(len(done)) / elapsed,
		P50Millis: millis(quantile(lat, 0.50)), P99Millis: millis(quantile(lat, 0.99)), MaxMillis: millis(quantile(lat, 1)),
		CPUSeconds: cpu, PostgresCPU: pgCPU,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// quantile is the nearest-rank q-quantile of ds, as the benchmark computes its own.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(q * float64(len(s))))
	return s[min(max(rank-1, 0), len(s)-1)]
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuSeconds is the user and system CPU time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// postgresCPU is the CPU time, in seconds, of process pid and of its children (the
// postmaster's backends and helpers), from /proc; 0 without a pid. A backend that ends
// in the window takes its time with it: the pool keeps its connections open throughout.
func postgresCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total float64
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (in parentheses, may hold spaces): state, ppid,
		// ... utime (14th field of the line) and stime (15th).
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data)[i+1:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if n != pid && ppid != pid {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		total += (ut + st) / 100 // USER_HZ
	}
	return total
}

func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}

// quiet logs River's warnings and errors only, to stderr (stdout is the result).
func quiet() *slog.Logger {
	var w io.Writer = os.Stderr
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
