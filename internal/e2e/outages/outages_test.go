// Package outages checks that the system heals by itself after the control plane or the
// state store is killed mid-run: Dapr placement, the Dapr scheduler and Redis, each
// killed with SIGKILL while tasks are submitted and run, and started again a while
// later. Every accepted task completes exactly once (one result file, one completion
// on its SSE stream, one completion in MySQL), and no task waits while a slot is idle.
// Submitters act as real clients: a 503 is retried after its Retry-After with the same
// Idempotency-Key.
package outages

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// poolSize is the worker node's slots, and heldMax the results it holds not stored
// before its slots wait with theirs (HELD_RESULTS_MAX, small here for TestResultsDiskFull).
const (
	poolSize = 3
	heldMax  = poolSize
)

func TestMain(m *testing.M) {
	stacktest.Main(m, stacktest.Options{AppEnv: map[string]map[string]string{"worker": {
		"POOL_SIZE": strconv.Itoa(poolSize), "HELD_RESULTS_MAX": strconv.Itoa(heldMax),
	}}})
}

func TestPlacementKilledMidRun(t *testing.T) {
	st := stacktest.Get(t)
	outageMidRun(t, st, "placement", st.PlacementAddr, 10*time.Second)
}

func TestSchedulerKilledMidRun(t *testing.T) {
	st := stacktest.Get(t)
	outageMidRun(t, st, "scheduler", st.SchedulerAddr, 10*time.Second)
}

func TestRedisKilledMidRun(t *testing.T) {
	st := stacktest.Get(t)
	outageMidRun(t, st, "redis", st.RedisAddr, 5*time.Second)
}

// The numbers of one run: tasks offered one after another, each sleeping taskMS.
const (
	tasks    = 40
	taskMS   = 50
	interval = 75 * time.Millisecond // between two submissions
	killAt   = time.Second           // after the first submission
	settle   = 5 * time.Second       // after the restart, for the idle/waiting invariant
)

// outageMidRun submits tasks one after another while service is killed killAt into the
// run and started again down later, and checks what users and the statistics see.
func outageMidRun(t *testing.T, st *stacktest.Stack, service, address string, down time.Duration) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	gw := st.Gateway()
	dir := "outages/" + service
	victim := st.Service(service)
	if victim == nil {
		t.Fatalf("no service %s", service)
	}

	var (
		mu       sync.Mutex
		accepted []string
		streams  = map[string]*stream{}
		refused  int // 503 answers (each retried)
	)
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		for i := range tasks {
			v, n, err := gw.SubmitRetrying(ctx, "sleep", map[string]any{"ms": taskMS}, dir)
			id := v.ID
			mu.Lock()
			refused += n
			if err != nil {
				t.Errorf("task %d: %v", i, err)
			} else {
				accepted = append(accepted, id)
				streams[id] = follow(ctx, gw, id)
			}
			mu.Unlock()
			time.Sleep(interval)
		}
	}()

	time.Sleep(killAt)
	victim.Kill()
	killed := time.Now()
	t.Logf("killed %s", service)
	time.Sleep(down)
	if err := st.RestartService(ctx, service, address); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("%s back after %s", service, back.Sub(killed).Round(time.Millisecond))
	<-submitted

	mu.Lock()
	ids := append([]string(nil), accepted...)
	t.Logf("%d tasks accepted, %d submissions answered 503 and retried", len(ids), refused)
	mu.Unlock()
	if len(ids) != tasks {
		t.Fatalf("%d of %d tasks accepted", len(ids), tasks)
	}

	// No task waits while a slot is idle, once the service has been back a few seconds.
	checkInvariant(ctx, t, gw, back.Add(settle))

	lastDone := checkCompletedOnce(ctx, t, st, dir, ids, streams)
	t.Logf("last task done %s after %s came back", lastDone.Sub(back).Round(time.Millisecond), service)
}

// checkCompletedOnce waits until every task of ids has ended, and fails unless each
// completed exactly once as users and the statistics see it: status completed, one
// completion event on its SSE stream (streams), one result file in dir and no other
// file there, one completed row in MySQL's task facts and one completion event in its
// ledger. It returns the time the last task finished.
func checkCompletedOnce(ctx context.Context, t *testing.T, st *stacktest.Stack, dir string, ids []string, streams map[string]*stream) time.Time {
	t.Helper()
	gw := st.Gateway()
	var lastDone time.Time
	for _, id := range ids {
		v, err := gw.WaitStatus(ctx, id, "completed", "failed")
		if err != nil {
			t.Fatal(err)
		}
		if v.Status != "completed" {
			t.Errorf("task %s ended %s: %s", id, v.Status, v.Error)
		}
		if v.FinishedAt != nil && v.FinishedAt.After(lastDone) {
			lastDone = *v.FinishedAt
		}
	}
	for _, id := range ids {
		if err := streams[id].wait(ctx); err != nil {
			t.Errorf("stream of %s: %v", id, err)
		}
	}

	// One result file per task, and nothing else in the directory (no second result,
	// no file of a task that was not accepted).
	entries, err := os.ReadDir(filepath.Join(st.ResultsRoot, dir))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			files[e.Name()] = true
		}
	}
	for _, id := range ids {
		if !files[id+".json"] {
			t.Errorf("no result file for task %s", id)
		}
		delete(files, id+".json")
	}
	if len(files) > 0 {
		t.Errorf("result files of no accepted task: %v", files)
	}

	// MySQL counts each task completed once.
	db, err := sql.Open("mysql", st.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	in := "'" + strings.Join(ids, "','") + "'"
	var rows, completed, failed int
	for {
		err = db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(completed_at), COUNT(failed_at) FROM task_facts WHERE task_id IN (`+in+`)`).Scan(&rows, &completed, &failed)
		if err == nil && completed == len(ids) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("task_facts shows %d rows, %d completed, %d failed (%v); want %d completed", rows, completed, failed, err, len(ids))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rows != len(ids) || failed != 0 {
		t.Errorf("task_facts: %d rows, %d failed; want %d rows, none failed", rows, failed, len(ids))
	}
	var completions int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE kind = 'completed' AND task_id IN (`+in+`)`).Scan(&completions); err != nil {
		t.Fatal(err)
	}
	if completions != len(ids) {
		t.Errorf("%d completion events stored, want %d (one per task)", completions, len(ids))
	}
	return lastDone
}

// checkInvariant samples the overview from from on, until nothing waits or the context
// ends, and fails if tasks wait while a slot is idle in two samples a second apart.
func checkInvariant(ctx context.Context, t *testing.T, gw stacktest.Gateway, from time.Time) {
	t.Helper()
	time.Sleep(time.Until(from))
	violated := time.Time{}
	for ctx.Err() == nil {
		resp, err := gw.Do(ctx, http.MethodGet, "/api/v1/overview", nil, nil)
		if err == nil && resp.Code == http.StatusOK {
			var o struct {
				Queue struct{ High, Normal int }
				Nodes []struct{ Busy, Idle int }
			}
			if err := json.Unmarshal(resp.Body, &o); err != nil {
				t.Fatalf("overview %s: %v", resp.Body, err)
			}
			waiting, idle := o.Queue.High+o.Queue.Normal, 0
			for _, n := range o.Nodes {
				idle += n.Idle
			}
			switch {
			case waiting == 0:
				return
			case idle == 0:
				violated = time.Time{}
			case violated.IsZero():
				violated = time.Now()
			case time.Since(violated) > time.Second:
				t.Fatalf("%d tasks waiting while %d slots are idle, for over a second: %s", waiting, idle, resp.Body)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stream follows one task's SSE stream, reconnecting if it breaks before the end (as
// an EventSource does), and counts its completion events.
type stream struct {
	done        chan struct{}
	mu          sync.Mutex
	completions int
	problems    []string
}

func follow(ctx context.Context, gw stacktest.Gateway, id string) *stream {
	s := &stream{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			events, connected := gw.Events(ctx, id)
			if err := <-connected; err != nil {
				time.Sleep(500 * time.Millisecond) // the gateway answers 503 while the store is down
				continue
			}
			ended := false
			for ev := range events {
				s.mu.Lock()
				switch ev.Event {
				case "completed":
					s.completions++
					ended = true
				case "failed":
					s.problems = append(s.problems, "failure event: "+string(ev.Data))
					ended = true
				}
				s.mu.Unlock()
			}
			if ended {
				return
			}
		}
	}()
	return s
}

func (s *stream) wait(ctx context.Context) error {
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("stream did not end: %w", ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.completions != 1 || len(s.problems) > 0 {
		return fmt.Errorf("%d completion events (want 1); %s", s.completions, strings.Join(s.problems, "; "))
	}
	return nil
}
