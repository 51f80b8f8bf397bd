// Package cancel checks cancellation end to end (DELETE /api/v1/tasks/{id}): a waiting
// task never runs, a running one has its computation stopped and its slot freed, the
// stream ends with one cancelled event, analytics counts it, a second cancel or one of
// a finished task is 409 and changes nothing, a cancel racing the completion ends one
// way or the other (never both, never lost), and a cancel while the worker node is
// being killed ends cancelled and never runs again.
package cancel

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

const poolSize = 2

func TestMain(m *testing.M) {
	stacktest.Main(m, stacktest.Options{AppEnv: map[string]map[string]string{"worker": {"POOL_SIZE": fmt.Sprint(poolSize)}}})
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Details struct {
			Status string `json:"status"`
		} `json:"details"`
	} `json:"error"`
}

// cancel sends DELETE and returns the status code, the task view (200) or the error's
// code and the status in its details (409).
func cancel(ctx context.Context, t *testing.T, gw stacktest.Gateway, id string) (int, stacktest.TaskView, errorBody) {
	t.Helper()
	resp, err := gw.Do(ctx, http.MethodDelete, "/api/v1/tasks/"+id, nil, nil)
	if err != nil {
		t.Fatalf("DELETE %s: %v", id, err)
	}
	var v stacktest.TaskView
	var e errorBody
	if resp.Code == http.StatusOK {
		if err := json.Unmarshal(resp.Body, &v); err != nil {
			t.Fatalf("DELETE %s: %s: %v", id, resp.Body, err)
		}
	} else if err := json.Unmarshal(resp.Body, &e); err != nil {
		t.Fatalf("DELETE %s: %d %s: %v", id, resp.Code, resp.Body, err)
	}
	return resp.Code, v, e
}

// terminalEvents follows the task's stream to its end and returns the events after the
// first snapshot.
func follow(ctx context.Context, t *testing.T, gw stacktest.Gateway, id string) <-chan []stacktest.SSEEvent {
	t.Helper()
	evs, conn := gw.Events(ctx, id)
	if err := <-conn; err != nil {
		t.Fatal(err)
	}
	out := make(chan []stacktest.SSEEvent, 1)
	go func() {
		var all []stacktest.SSEEvent
		for e := range evs {
			all = append(all, e)
		}
		out <- all
	}()
	return out
}

// terminal returns the names of the terminal events among evs.
func terminal(evs []stacktest.SSEEvent) []string {
	var out []string
	for _, e := range evs {
		if e.Event == "completed" || e.Event == "failed" || e.Event == "cancelled" {
			out = append(out, e.Event)
		}
	}
	return out
}

func workerMetrics(ctx context.Context, t *testing.T, st *stacktest.Stack) stacktest.Metrics {
	t.Helper()
	all := stacktest.Metrics{}
	for _, in := range st.Running("worker") {
		m, err := stacktest.ScrapeMetrics(ctx, in.BaseURL())
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			all[k] += v
		}
	}
	return all
}

func waitRunning(ctx context.Context, t *testing.T, gw stacktest.Gateway, id string) stacktest.TaskView {
	t.Helper()
	v, err := gw.WaitStatus(ctx, id, "running")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Waiting tasks cancelled never run; their streams end with one cancelled event; a
// second cancel, and a cancel of a completed task, are 409 with the status and change
// nothing; a cancelled task's result is 409.
func TestCancelWaitingTasks(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx, stop := context.WithTimeout(t.Context(), 2*time.Minute)
	defer stop()
	before := workerMetrics(ctx, t, st)
	cancelledBefore := overviewCancelled(ctx, t, gw, 0)

	var blockers, waiting []string
	for range poolSize {
		v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 3000}, "cancel")
		if err != nil {
			t.Fatal(err)
		}
		blockers = append(blockers, v.ID)
	}
	for _, id := range blockers {
		waitRunning(ctx, t, gw, id)
	}
	streams := map[string]<-chan []stacktest.SSEEvent{}
	for range 2 * poolSize { // some in the node's buffer (leased), the rest in the queue
		v, err := gw.Submit(ctx, "noop", map[string]any{}, "cancel")
		if err != nil {
			t.Fatal(err)
		}
		waiting = append(waiting, v.ID)
		streams[v.ID] = follow(ctx, t, gw, v.ID)
	}
	for _, id := range waiting {
		code, v, e := cancel(ctx, t, gw, id)
		if code != http.StatusOK || v.Status != "cancelled" || v.FinishedAt == nil || v.StartedAt != nil {
			t.Fatalf("DELETE waiting %s = %d %+v %+v, want 200 cancelled, never started", id, code, v, e)
		}
	}
	for id, s := range streams {
		evs := <-s
		if got := terminal(evs); len(got) != 1 || got[0] != "cancelled" {
			t.Errorf("stream of %s: terminal events %v, want one cancelled", id, got)
		}
	}
	for _, id := range blockers {
		if v, err := gw.WaitStatus(ctx, id, "completed", "failed", "cancelled"); err != nil || v.Status != "completed" {
			t.Fatalf("blocker %s: %+v %v", id, v, err)
		}
	}
	time.Sleep(time.Second) // the freed slots would take the waiting tasks now, if they were still queued
	for _, id := range waiting {
		v, err := gw.Get(ctx, id)
		if err != nil || v.Status != "cancelled" || v.Attempts != 0 || v.StartedAt != nil || v.Result != nil {
			t.Errorf("waiting task %s after the blockers: %+v %v, want cancelled, never started", id, v, err)
		}
		if code, _, e := cancel(ctx, t, gw, id); code != http.StatusConflict || e.Error.Code != "task_finished" || e.Error.Details.Status != "cancelled" {
			t.Errorf("second DELETE %s = %d %+v, want 409 task_finished, status cancelled", id, code, e)
		}
		if resp, err := gw.Do(ctx, http.MethodGet, "/api/v1/tasks/"+id+"/result", nil, nil); err != nil || resp.Code != http.StatusConflict || !strings.Contains(string(resp.Body), "task_cancelled") {
			t.Errorf("result of cancelled %s = %d %s %v", id, resp.Code, resp.Body, err)
		}
	}
	if code, _, e := cancel(ctx, t, gw, blockers[0]); code != http.StatusConflict || e.Error.Code != "task_finished" || e.Error.Details.Status != "completed" {
		t.Errorf("DELETE of a completed task = %d %+v, want 409 task_finished, status completed", code, e)
	}
	if v, err := gw.Get(ctx, blockers[0]); err != nil || v.Status != "completed" || v.Result == nil {
		t.Errorf("completed task after a refused cancel: %+v %v", v, err)
	}
	if resp, err := gw.Do(ctx, http.MethodDelete, "/api/v1/tasks/3f2b8c1e-9a4d-4e7f-8b1a-2c3d4e5f6a7b", nil, nil); err != nil || resp.Code != http.StatusNotFound {
		t.Errorf("DELETE of an unknown task = %d %v", resp.Code, err)
	}
	after := workerMetrics(ctx, t, st)
	if n := after.Sum("taskgrid_worker_attempts_total", `task="noop"`) - before.Sum("taskgrid_worker_attempts_total", `task="noop"`); n != 0 {
		t.Errorf("%v attempts of the cancelled waiting tasks ran", n)
	}
	// The overview counts the cancels, from the analytics ledger (a micro-batch behind).
	if n := overviewCancelled(ctx, t, gw, cancelledBefore+len(waiting)); n < cancelledBefore+len(waiting) {
		t.Errorf("the overview counts %d cancelled tasks, want at least %d + %d", n, cancelledBefore, len(waiting))
	}
}

// overviewCancelled reads the overview's count of cancelled tasks once it comes from the
// analytics ledger and is at least least, or the last count read after 30 s.
func overviewCancelled(ctx context.Context, t *testing.T, gw stacktest.Gateway, least int) int {
	t.Helper()
	var o struct {
		Source   string `json:"source"`
		Failures struct {
			Cancelled int `json:"cancelled"`
		} `json:"failures"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		resp, err := gw.Do(ctx, http.MethodGet, "/api/v1/overview", nil, nil)
		if err != nil || resp.Code != http.StatusOK || json.Unmarshal(resp.Body, &o) != nil {
			t.Fatalf("GET /api/v1/overview: %v %d %s", err, resp.Code, resp.Body)
		}
		if o.Source == "analytics" && o.Failures.Cancelled >= least || time.Now().After(deadline) {
			if o.Source != "analytics" {
				t.Fatalf("the overview's counts come from %q, want analytics", o.Source)
			}
			return o.Failures.Cancelled
		}
	}
}

// A running task cancelled: its slot is free at once (the next task starts on it while
// the other slot is still busy), the worker counts the attempt cancelled (no failure,
// no retry), its stream ends with one cancelled event, and analytics counts it.
func TestCancelRunningTask(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx, stop := context.WithTimeout(t.Context(), 2*time.Minute)
	defer stop()
	before := workerMetrics(ctx, t, st)

	var long []stacktest.TaskView
	for range poolSize {
		v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 60000}, "cancel")
		if err != nil {
			t.Fatal(err)
		}
		long = append(long, v)
	}
	for i := range long {
		long[i] = waitRunning(ctx, t, gw, long[i].ID)
	}
	victim := long[0]
	if v, err := st.RedisTTL(ctx, "task-"+victim.ID); err != nil || v != -1 {
		t.Errorf("running task's record: TTL %d (%v), want none (-1)", v, err)
	}
	s := follow(ctx, t, gw, victim.ID)
	at := time.Now()
	code, v, e := cancel(ctx, t, gw, victim.ID)
	if code != http.StatusOK || v.Status != "cancelled" {
		t.Fatalf("DELETE running = %d %+v %+v", code, v, e)
	}
	// A cancelled record expires TASK_RETENTION (24 h by default) after its cancel.
	if v, err := st.AwaitRedisTTL(ctx, "task-"+victim.ID); err != nil || v <= 86400-120 || v > 86400 {
		t.Errorf("cancelled task's record: TTL %d (%v), want about a day", v, err)
	}
	next, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 10}, "cancel")
	if err != nil {
		t.Fatal(err)
	}
	done, err := gw.WaitStatus(ctx, next.ID, "completed", "failed")
	if err != nil || done.Status != "completed" {
		t.Fatalf("next task: %+v %v", done, err)
	}
	if took := time.Since(at); took > 5*time.Second || done.Worker != victim.Worker {
		t.Errorf("next task done %s after the cancel on %s; want promptly, on the freed slot %s", took, done.Worker, victim.Worker)
	}
	if got := terminal(<-s); len(got) != 1 || got[0] != "cancelled" {
		t.Errorf("stream: terminal events %v, want one cancelled", got)
	}
	if code, _, e := cancel(ctx, t, gw, victim.ID); code != http.StatusConflict || e.Error.Details.Status != "cancelled" {
		t.Errorf("second DELETE = %d %+v", code, e)
	}
	if code, _, _ := cancel(ctx, t, gw, long[1].ID); code != http.StatusOK {
		t.Errorf("DELETE of the other running task = %d", code)
	}
	// The worker counted both attempts cancelled, none failed or re-queued.
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := workerMetrics(ctx, t, st)
		cancelled := after.Sum("taskgrid_worker_attempts_total", `task="sleep"`, `outcome="cancelled"`) - before.Sum("taskgrid_worker_attempts_total", `task="sleep"`, `outcome="cancelled"`)
		failed := 0.0
		for _, o := range []string{"error", "timeout", "panic"} {
			failed += after.Sum("taskgrid_worker_attempts_total", `task="sleep"`, `outcome="`+o+`"`) - before.Sum("taskgrid_worker_attempts_total", `task="sleep"`, `outcome="`+o+`"`)
		}
		requeued := after.Sum("taskgrid_tasks_requeued_total") - before.Sum("taskgrid_tasks_requeued_total")
		if cancelled == 2 && failed == 0 && requeued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker metrics: %v cancelled, %v failed, %v re-queued; want 2, 0, 0", cancelled, failed, requeued)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, id := range []string{long[0].ID, long[1].ID} {
		if v, err := gw.Get(ctx, id); err != nil || v.Status != "cancelled" || v.Attempts != 1 {
			t.Errorf("task %s: %+v %v", id, v, err)
		}
	}
	// Analytics: the cancels are in the ledger, the facts and the window statistics.
	db, err := sql.Open("mysql", st.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitSQL(ctx, t, db, 2, `SELECT COUNT(*) FROM task_facts WHERE cancelled_at IS NOT NULL AND completed_at IS NULL AND task_id IN (?, ?)`, long[0].ID, long[1].ID)
	waitSQL(ctx, t, db, 2, `SELECT COUNT(*) FROM events WHERE kind = 'cancelled' AND task_id IN (?, ?)`, long[0].ID, long[1].ID)
	// A trigger writes the facts and then the windows, in statements of their own: the
	// windows catch up with the facts within a trigger or two.
	for {
		var facts, windows int
		if err := db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM task_facts WHERE cancelled_at IS NOT NULL),
  (SELECT COALESCE(SUM(cancelled), 0) FROM window_stats WHERE grain = 'minute')`).Scan(&facts, &windows); err != nil {
			t.Fatal(err)
		}
		if facts >= 2 && facts == windows {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cancelled tasks: %d in task_facts, %d in the minute windows", facts, windows)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitSQL waits until query (one integer) gives want.
func waitSQL(ctx context.Context, t *testing.T, db *sql.DB, want int, query string, args ...any) {
	t.Helper()
	var got int
	for {
		err := db.QueryRowContext(ctx, query, args...).Scan(&got)
		if err == nil && got == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %d, want %d (%v)", query, got, want, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Many short tasks, each cancelled around the moment it finishes: each ends either
// completed with its result (the cancel answered 409 completed) or cancelled with no
// result (the cancel answered 200) — never both, never neither — and its stream and
// the analytics facts agree.
func TestCancelRacesCompletion(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx, stop := context.WithTimeout(t.Context(), 3*time.Minute)
	defer stop()
	const n = 60
	type outcome struct {
		id     string
		code   int
		status string // the 409's status, or cancelled
		evs    []stacktest.SSEEvent
	}
	outs := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		ms := 20 + rand.IntN(60)
		v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": ms}, "cancel-race")
		if err != nil {
			t.Fatal(err)
		}
		s := follow(ctx, t, gw, v.ID)
		wg.Go(func() {
			// Cancel about when it finishes: after its start plus its run time, give or take.
			if rv, err := gw.WaitStatus(ctx, v.ID, "running", "completed"); err == nil && rv.StartedAt != nil {
				time.Sleep(time.Until(rv.StartedAt.Add(time.Duration(ms-15+rand.IntN(40)) * time.Millisecond)))
			}
			code, cv, e := cancel(ctx, t, gw, v.ID)
			o := outcome{id: v.ID, code: code, status: cv.Status}
			if code != http.StatusOK {
				o.status = e.Error.Details.Status
			}
			o.evs = <-s
			outs[i] = o
		})
	}
	wg.Wait()
	counts := map[string]int{}
	var cancelledIDs, completedIDs []string
	for _, o := range outs {
		final, err := gw.Get(ctx, o.id)
		if err != nil {
			t.Fatal(err)
		}
		term := terminal(o.evs)
		switch {
		case o.code == http.StatusOK:
			counts["cancelled"]++
			cancelledIDs = append(cancelledIDs, o.id)
			if final.Status != "cancelled" || final.Result != nil || len(term) != 1 || term[0] != "cancelled" {
				t.Errorf("task %s: cancel answered 200, then %s (result %v), stream %v", o.id, final.Status, final.Result != nil, term)
			}
			if resp, err := gw.Do(ctx, http.MethodGet, "/api/v1/tasks/"+o.id+"/result", nil, nil); err != nil || resp.Code != http.StatusConflict {
				t.Errorf("result of cancelled %s: %d %v", o.id, resp.Code, err)
			}
		case o.code == http.StatusConflict && o.status == "completed":
			counts["completed"]++
			completedIDs = append(completedIDs, o.id)
			if final.Status != "completed" || final.Result == nil || len(term) != 1 || term[0] != "completed" {
				t.Errorf("task %s: cancel answered 409 completed, then %s (result %v), stream %v", o.id, final.Status, final.Result != nil, term)
			}
			if resp, err := gw.Do(ctx, http.MethodGet, "/api/v1/tasks/"+o.id+"/result", nil, nil); err != nil || resp.Code != http.StatusOK {
				t.Errorf("result of completed %s: %d %v", o.id, resp.Code, err)
			}
		default:
			t.Errorf("task %s: cancel answered %d %q", o.id, o.code, o.status)
		}
	}
	t.Logf("of %d tasks cancelled as they finished: %v", n, counts)
	if counts["cancelled"] == 0 || counts["completed"] == 0 {
		t.Logf("the race went one way only this time (%v)", counts) // still checked: never both, never lost
	}
	// Analytics: each task has a completion or a cancel, never both.
	db, err := sql.Open("mysql", st.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ids := make([]any, 0, n)
	for _, o := range outs {
		ids = append(ids, o.id)
	}
	in := "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
	waitSQL(ctx, t, db, counts["cancelled"], `SELECT COUNT(*) FROM task_facts WHERE cancelled_at IS NOT NULL AND task_id IN `+in, ids...)
	waitSQL(ctx, t, db, counts["completed"], `SELECT COUNT(*) FROM task_facts WHERE completed_at IS NOT NULL AND task_id IN `+in, ids...)
	waitSQL(ctx, t, db, 0, `SELECT COUNT(*) FROM task_facts WHERE completed_at IS NOT NULL AND cancelled_at IS NOT NULL AND task_id IN `+in, ids...)
}

// A task cancelled while the worker node running it is being killed ends cancelled and
// is never run to completion afterwards (its lease, lost with the node, does not queue
// it again, and a start of it is refused by its record).
func TestCancelWhileNodeKilled(t *testing.T) {
	st := stacktest.Get(t)
	gw := st.Gateway()
	ctx, stop := context.WithTimeout(t.Context(), 3*time.Minute)
	defer stop()
	victim, err := st.StartApp(ctx, "worker", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.App.Kill(); victim.Daprd.Kill() })
	node := victim.Name + "/"

	// Fill every slot of both nodes with 2 s sleeps until one runs on the victim.
	var target stacktest.TaskView
	var all []string
	for target.ID == "" {
		v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 2000}, "cancel-kill")
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, v.ID)
		for _, id := range all {
			if cur, err := gw.Get(ctx, id); err == nil && cur.Status == "running" && strings.HasPrefix(cur.Worker, node) {
				target = cur
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatal("no task ran on the second node")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := follow(ctx, t, gw, target.ID)
	var wg sync.WaitGroup
	wg.Go(func() { victim.App.Kill() })
	code, v, e := cancel(ctx, t, gw, target.ID)
	wg.Wait()
	if code != http.StatusOK || v.Status != "cancelled" {
		t.Fatalf("DELETE while the node is killed = %d %+v %+v", code, v, e)
	}
	// The lease expires (2 s) and the other tasks of the victim run elsewhere; the
	// cancelled one must not.
	for _, id := range all {
		if id == target.ID {
			continue
		}
		if v, err := gw.WaitStatus(ctx, id, "completed", "failed"); err != nil || v.Status != "completed" {
			t.Fatalf("task %s: %+v %v", id, v, err)
		}
	}
	time.Sleep(3 * time.Second)
	final, err := gw.Get(ctx, target.ID)
	if err != nil || final.Status != "cancelled" || final.Attempts != target.Attempts || final.Result != nil {
		t.Errorf("cancelled task after the kill: %+v %v; want cancelled, attempt %d, no result", final, err, target.Attempts)
	}
	if got := terminal(<-s); len(got) != 1 || got[0] != "cancelled" {
		t.Errorf("stream: terminal events %v, want one cancelled", got)
	}
}
