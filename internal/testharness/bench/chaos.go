package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// ChaosKinds are the kinds of process chaos kills: each app's process and its sidecar,
// and every service of the stack.
var ChaosKinds = []string{
	"gateway app", "gateway sidecar", "worker app", "worker sidecar", "storekeeper app", "storekeeper sidecar",
	"analytics app", "analytics sidecar", "placement", "scheduler", "redis", "kafka", "mariadb",
}

// chaosKill returns the kinds of process the chaos run kills: those named (each one of
// ChaosKinds), or all when none is.
func chaosKill(names []string) ([]string, error) {
	if len(names) == 0 {
		return ChaosKinds, nil
	}
	for _, n := range names {
		if !slices.Contains(ChaosKinds, n) {
			return nil, fmt.Errorf("chaos: no kind of process %q (kinds: %s)", n, strings.Join(ChaosKinds, ", "))
		}
	}
	return names, nil
}

// chaosTask is one task of the chaos load, as its client saw it.
type chaosTask struct {
	id          string
	submitted   time.Time
	notified    time.Time // first completion on its stream
	completions int       // completion events on its streams (a user sees each)
}

// chaosLoad is the load's clients' record.
type chaosLoad struct {
	mu       sync.Mutex
	tasks    map[string]*chaosTask
	refused  int // submissions answered 503 or not at all, each retried
	gaveUp   int // submissions never accepted
	wg       sync.WaitGroup
	payloads []func() (string, map[string]any)
}

func newChaosLoad() *chaosLoad {
	return &chaosLoad{tasks: map[string]*chaosTask{}, payloads: []func() (string, map[string]any){
		func() (string, map[string]any) { return "noop", map[string]any{} },
		func() (string, map[string]any) { return "sleep", map[string]any{"ms": 20 + rand.IntN(180)} },
		func() (string, map[string]any) { return "primes", map[string]any{"limit": 20000} },
		func() (string, map[string]any) { return "hash", map[string]any{"data": "chaos", "iterations": 1000} },
	}}
}

// submit submits one task as a careful client does: any failure (503, no answer) is
// retried with the same Idempotency-Key for up to two minutes; then it follows the task.
func (l *chaosLoad) submit(ctx context.Context, gw stacktest.Gateway) {
	typ, payload := l.payloads[rand.IntN(len(l.payloads))]()
	body, _ := json.Marshal(map[string]any{"task": typ, "payload": payload, "directory": "bench-chaos"})
	key := uuid.NewString()
	submitted := time.Now()
	deadline := submitted.Add(2 * time.Minute)
	for {
		resp, err := gw.Do(ctx, http.MethodPost, "/api/v1/tasks", body, map[string]string{"Idempotency-Key": key})
		if err == nil && (resp.Code == http.StatusAccepted || resp.Code == http.StatusOK) {
			var v stacktest.TaskView
			if json.Unmarshal(resp.Body, &v) == nil {
				t := &chaosTask{id: v.ID, submitted: submitted}
				l.mu.Lock()
				if _, dup := l.tasks[v.ID]; !dup { // two keys never share a task
					l.tasks[v.ID] = t
				}
				l.mu.Unlock()
				l.wg.Go(func() { l.follow(ctx, gw, t) })
				return
			}
		}
		l.mu.Lock()
		l.refused++
		l.mu.Unlock()
		if time.Now().After(deadline) || ctx.Err() != nil {
			l.mu.Lock()
			l.gaveUp++
			l.mu.Unlock()
			return
		}
		time.Sleep(time.Second)
	}
}

// follow reads the task's SSE stream, reconnecting as an EventSource does, until it
// has seen the task end.
func (l *chaosLoad) follow(ctx context.Context, gw stacktest.Gateway, t *chaosTask) {
	for ctx.Err() == nil {
		events, connected := gw.Events(ctx, t.id)
		if err := <-connected; err != nil {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		ended := false
		for ev := range events {
			if ev.Event == "completed" || ev.Event == "failed" {
				l.mu.Lock()
				if ev.Event == "completed" {
					t.completions++
					if t.notified.IsZero() {
						t.notified = ev.At
					}
				}
				l.mu.Unlock()
				ended = true
			}
		}
		if ended {
			return
		}
	}
}

// kill is one kill of the run.
type kill struct {
	kind      string
	at, back  time.Time
	recovered time.Duration // from the kill to the first completion of a task submitted after it came back
}

// chaos runs a steady load of mixed tasks (ChaosRate a second) for ChaosDuration while a
// random process of the stack is killed with SIGKILL every ChaosEvery and started again
// ChaosDown later; then it waits for every accepted task and reports tasks accepted,
// completed, lost (accepted and never completed), completed twice as a user saw it (two
// completion events), the time from each kill until service resumed (the first
// completion of a task submitted after the process was back) by kind of kill, and
// whether MySQL's task facts count exactly the completed tasks. It stops by itself and
// leaves every process of the stack running.
func chaos(ctx context.Context, e *Env) ([]Measure, error) {
	c, st := e.Config, e.Stack
	kinds, err := chaosKill(c.ChaosKill)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.ChaosDuration+8*time.Minute)
	defer cancel()
	gw := st.Gateway()
	load := newChaosLoad()
	loadCtx, stopLoad := context.WithTimeout(ctx, c.ChaosDuration)
	defer stopLoad()
	var clients sync.WaitGroup
	clients.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(max(c.ChaosRate, 1)))
		defer tick.Stop()
		var each sync.WaitGroup
		defer each.Wait()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
				each.Go(func() { load.submit(ctx, gw) })
			}
		}
	})

	var kills []*kill
	for loadCtx.Err() == nil {
		select {
		case <-loadCtx.Done():
		case <-time.After(c.ChaosEvery):
		}
		if loadCtx.Err() != nil {
			break
		}
		k := &kill{kind: kinds[rand.IntN(len(kinds))]}
		if err := killAndRestart(ctx, st, k, c.ChaosDown); err != nil {
			return nil, fmt.Errorf("chaos: %s: %w", k.kind, err)
		}
		e.Logf("bench: chaos: %s killed, back after %s", k.kind, k.back.Sub(k.at).Round(time.Millisecond))
		kills = append(kills, k)
	}
	clients.Wait()

	// Every accepted task must complete: wait for each (the streams end with it).
	load.mu.Lock()
	tasks := make([]*chaosTask, 0, len(load.tasks))
	for _, t := range load.tasks {
		tasks = append(tasks, t)
	}
	load.mu.Unlock()
	lost := 0
	for _, t := range tasks {
		wctx, wcancel := context.WithTimeout(ctx, 3*time.Minute)
		v, err := gw.WaitStatus(wctx, t.id, "completed", "failed")
		wcancel()
		if err != nil || v.Status != "completed" {
			lost++
			e.Logf("bench: chaos: task %s not completed: %s %v", t.id, v.Status, err)
		}
	}
	if lost > 0 {
		e.keep = fmt.Sprintf("the chaos run lost %d tasks: look for them in the logs and in Redis's data", lost)
	}
	streamsDone := make(chan struct{})
	go func() { load.wg.Wait(); close(streamsDone) }()
	select {
	case <-streamsDone:
	case <-time.After(time.Minute):
		e.Logf("bench: chaos: some streams did not end within a minute of their tasks")
	}

	load.mu.Lock()
	twice, unseen := 0, 0
	var ids []string
	for _, t := range tasks {
		ids = append(ids, t.id)
		switch {
		case t.completions > 1:
			twice++
		case t.completions == 0:
			unseen++
		}
	}
	for _, k := range kills {
		first := time.Time{}
		for _, t := range tasks {
			if t.submitted.After(k.back) && !t.notified.IsZero() && (first.IsZero() || t.notified.Before(first)) {
				first = t.notified
			}
		}
		if !first.IsZero() {
			k.recovered = first.Sub(k.at)
		}
	}
	ms := []Measure{
		{"tasks accepted", "tasks", float64(len(tasks))},
		{"tasks completed", "tasks", float64(len(tasks) - lost)},
		{"tasks lost (accepted, never completed)", "tasks", float64(lost)},
		{"tasks completed twice as users saw it (two completion events)", "tasks", float64(twice)},
		{"tasks whose completion no stream showed", "tasks", float64(unseen)},
		{"submissions refused and retried (503 or no answer)", "requests", float64(load.refused)},
		{"submissions never accepted (after 2 min of retries)", "requests", float64(load.gaveUp)},
		{"kills", "kills", float64(len(kills))},
	}
	load.mu.Unlock()
	byKind := map[string][]time.Duration{}
	for _, k := range kills {
		if k.recovered > 0 {
			byKind[k.kind] = append(byKind[k.kind], k.recovered)
		}
	}
	killed := slices.Sorted(func(yield func(string) bool) {
		for k := range byKind {
			if !yield(k) {
				return
			}
		}
	})
	for _, kind := range killed {
		ds := byKind[kind]
		ms = append(ms,
			Measure{"recovery, " + kind + " killed: p50", "s", Quantile(ds, 0.5).Seconds()},
			Measure{"recovery, " + kind + " killed: max", "s", Quantile(ds, 1).Seconds()})
	}
	equal, err := factsMatch(ctx, st, ids, len(tasks)-lost)
	if err != nil {
		return nil, err
	}
	return append(ms, Measure{"MySQL task facts equal the tasks (accepted, completed, each once)", "1 = yes", equal}), nil
}

// killAndRestart kills one process of kind k.kind with SIGKILL, waits down, starts it
// again and waits until it serves (an app: its /readyz; a service: its port).
func killAndRestart(ctx context.Context, st *stacktest.Stack, k *kill, down time.Duration) error {
	app, part, isApp := strings.Cut(k.kind, " ")
	if isApp {
		ins := st.Running(app)
		if len(ins) == 0 {
			return fmt.Errorf("no running %s", app)
		}
		in := ins[rand.IntN(len(ins))]
		k.at = time.Now()
		if part == "app" {
			in.App.Kill()
		} else {
			in.Daprd.Kill()
		}
		time.Sleep(down)
		var err error
		if part == "app" {
			err = in.StartApp(ctx)
		} else if err = in.StartSidecar(ctx); err == nil {
			err = in.WaitReady(ctx)
		}
		k.back = time.Now()
		return err
	}
	addr := map[string]string{"placement": st.PlacementAddr, "scheduler": st.SchedulerAddr, "redis": st.RedisAddr, "kafka": st.KafkaAddr, "mariadb": st.MySQLAddr}[k.kind]
	p := st.Service(k.kind)
	if p == nil {
		return fmt.Errorf("no service %s", k.kind)
	}
	k.at = time.Now()
	p.Kill()
	time.Sleep(down)
	err := st.RestartService(ctx, k.kind, addr)
	k.back = time.Now()
	return err
}

// factsMatch reports (1 or 0) whether MySQL's task facts show exactly completed of ids
// completed, one row each and every one accepted (its accepted event reached the ledger,
// from its gateway or with its first start), waiting up to two minutes for analytics to
// catch up.
func factsMatch(ctx context.Context, st *stacktest.Stack, ids []string, completed int) (float64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	db, err := sql.Open("mysql", st.MySQLDSN)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	q := `SELECT COUNT(*), COUNT(accepted_at), COUNT(completed_at) FROM task_facts WHERE task_id IN ('` + strings.Join(ids, "','") + `')`
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var rows, accepted, done int
		err := db.QueryRowContext(ctx, q).Scan(&rows, &accepted, &done)
		if err == nil && rows == len(ids) && accepted == len(ids) && done == completed {
			return 1, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
}
