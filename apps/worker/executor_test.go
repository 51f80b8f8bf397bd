package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/domain/catalog"
)

// funcType is a catalog.Type whose job runs fn; it accepts only the common fields.
type funcType struct {
	name  string
	limit time.Duration
	fn    func(ctx context.Context, progress catalog.ProgressFunc) (catalog.Result, error)
}

func (f funcType) Spec() catalog.Spec {
	return catalog.Spec{
		Name: f.name, Description: "A test type.", Fields: []catalog.Field{},
		Example: json.RawMessage(`{}`), TimeLimit: f.limit,
	}
}

func (f funcType) Prepare(json.RawMessage) (catalog.Job, error) { return funcJob(f.fn), nil }

type funcJob func(ctx context.Context, progress catalog.ProgressFunc) (catalog.Result, error)

func (j funcJob) Run(ctx context.Context, progress catalog.ProgressFunc) (catalog.Result, error) {
	return j(ctx, progress)
}

// Time bounds of the timing-sensitive cases: short enough to keep the test fast, and an
// upper slack generous enough for -race on a loaded machine.
const (
	testLimit = 40 * time.Millisecond  // time limit of the custom types that time out
	testGrace = 200 * time.Millisecond // Executor.AbandonGrace in these tests
	slack     = 3 * time.Second
	lateBy    = 30 * time.Millisecond // how long past the limit "late" ends
)

// testRegistry returns the built-in types plus misbehaving ones. Jobs that ignore
// cancellation block until release is closed; ran counts runs of "counting".
func testRegistry(t *testing.T, release <-chan struct{}, ran *atomic.Int32) *catalog.Registry {
	t.Helper()
	ok := json.RawMessage(`{"ok":true}`)
	types := append(catalog.Builtins(),
		funcType{name: "boom", limit: time.Second, fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			var m map[string]int
			m["nil map write"] = 1 // a genuine runtime panic, not just panic(...)
			return catalog.Result{}, nil
		}},
		funcType{name: "boom_value", limit: time.Second, fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			panic("kaboom")
		}},
		funcType{name: "failing", limit: time.Second, fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			return catalog.Result{}, errDiskOnFire
		}},
		// Returns DeadlineExceeded of its own (say from an inner call) while the attempt's
		// limit is far away: an error, not a timeout.
		funcType{name: "own_deadline", limit: time.Minute, fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			return catalog.Result{}, fmt.Errorf("inner call: %w", context.DeadlineExceeded)
		}},
		funcType{name: "stubborn", limit: testLimit, fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			<-release // ignores ctx
			return catalog.Result{Output: ok}, nil
		}},
		funcType{name: "stubborn_long", limit: time.Minute, fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			<-release
			return catalog.Result{Output: ok}, nil
		}},
		// Ignores ctx but finishes within the grace: a success after the limit is a timeout.
		funcType{name: "late", limit: testLimit, fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			time.Sleep(testLimit + lateBy)
			return catalog.Result{Output: ok}, nil
		}},
		funcType{name: "counting", limit: time.Second, fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			ran.Add(1)
			return catalog.Result{Output: ok}, nil
		}},
	)
	reg, err := catalog.NewRegistry(types...)
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	return reg
}

var errDiskOnFire = errors.New("disk on fire")

// countPrimes counts primes up to n by trial division: an independent oracle.
func countPrimes(n int) (count, largest int) {
	for i := 2; i <= n; i++ {
		prime := true
		for d := 2; d*d <= i; d++ {
			if i%d == 0 {
				prime = false
				break
			}
		}
		if prime {
			count, largest = count+1, i
		}
	}
	return count, largest
}

func TestExecute(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // lets abandoned jobs end
	var ran atomic.Int32
	reg := testRegistry(t, release, &ran)

	wantCount, wantLargest := countPrimes(100)
	if wantCount != 25 || wantLargest != 97 {
		t.Fatalf("oracle: countPrimes(100) = %d, %d; want 25, 97", wantCount, wantLargest)
	}
	notAbandoned := func(t *testing.T, out Outcome) {
		t.Helper()
		if strings.Contains(out.Err.Error(), "abandoned") {
			t.Errorf("a job that ended within the grace was reported abandoned: %v", out.Err)
		}
	}
	checkPrimes := func(t *testing.T, out Outcome) {
		t.Helper()
		var got struct{ Limit, Count, Largest int }
		if err := json.Unmarshal(out.Result.Output, &got); err != nil {
			t.Fatalf("decode output %s: %v", out.Result.Output, err)
		}
		if got.Limit != 100 || got.Count != wantCount || got.Largest != wantLargest {
			t.Errorf("output = %+v, want limit 100, count %d, largest %d", got, wantCount, wantLargest)
		}
	}

	tests := []struct {
		name    string
		typ     string
		payload string
		attempt int
		want    string // failure kind; "" for success
		errIs   error  // when set, Err must match with errors.Is
		errHas  string // when set, Err's text must contain it
		minDur  time.Duration
		maxDur  time.Duration // 0: slack
		check   func(t *testing.T, out Outcome)
	}{
		{name: "primes succeeds", typ: catalog.NamePrimes, payload: `{"limit":100}`, attempt: 1, check: checkPrimes},
		{name: "noop succeeds", typ: catalog.NameNoop, payload: `{}`, attempt: 1, check: func(t *testing.T, out Outcome) {
			if string(out.Result.Output) != `{}` {
				t.Errorf("output = %s, want {}", out.Result.Output)
			}
		}},
		{name: "sleep within its limit succeeds", typ: catalog.NameSleep, payload: `{"ms":20,"timeLimitMs":5000}`, attempt: 1,
			minDur: 20 * time.Millisecond},

		{name: "forceFailure 2 fails attempt 1", typ: catalog.NamePrimes, payload: `{"limit":100,"forceFailure":2}`, attempt: 1,
			want: FailureForced, errHas: "attempt 1 of 2"},
		{name: "forceFailure 2 fails attempt 2", typ: catalog.NamePrimes, payload: `{"limit":100,"forceFailure":2}`, attempt: 2,
			want: FailureForced, errHas: "attempt 2 of 2"},
		{name: "forceFailure 2 lets attempt 3 succeed", typ: catalog.NamePrimes, payload: `{"limit":100,"forceFailure":2}`, attempt: 3,
			check: checkPrimes},
		{name: "forceFailure 1 lets attempt 2 succeed", typ: catalog.NamePrimes, payload: `{"limit":100,"forceFailure":1}`, attempt: 2,
			check: checkPrimes},
		{name: "forceFailure 0 forces nothing", typ: catalog.NamePrimes, payload: `{"limit":100,"forceFailure":0}`, attempt: 1,
			check: checkPrimes},

		{name: "limit below minimum is invalid", typ: catalog.NamePrimes, payload: `{"limit":1}`, attempt: 1,
			want: FailureInvalid, errIs: catalog.ErrInvalidPayload, errHas: "limit"},
		{name: "missing required field is invalid", typ: catalog.NamePrimes, payload: `{}`, attempt: 1,
			want: FailureInvalid, errIs: catalog.ErrInvalidPayload, errHas: "limit"},
		{name: "unknown field is invalid", typ: catalog.NamePrimes, payload: `{"limit":100,"colour":"red"}`, attempt: 1,
			want: FailureInvalid, errIs: catalog.ErrInvalidPayload, errHas: "colour"},
		{name: "malformed JSON is invalid", typ: catalog.NamePrimes, payload: `{"limit":`, attempt: 1,
			want: FailureInvalid, errIs: catalog.ErrInvalidPayload},
		{name: "timeLimitMs above the type's limit is invalid", typ: catalog.NameSleep, payload: `{"ms":1,"timeLimitMs":60001}`, attempt: 1,
			want: FailureInvalid, errIs: catalog.ErrInvalidPayload, errHas: "timeLimitMs"},
		{name: "invalid beats forceFailure", typ: catalog.NamePrimes, payload: `{"limit":1,"forceFailure":3}`, attempt: 1,
			want: FailureInvalid, errIs: catalog.ErrInvalidPayload},
		{name: "unknown type is invalid", typ: "no_such_type", payload: `{}`, attempt: 1,
			want: FailureInvalid, errIs: catalog.ErrUnknownType, errHas: "no_such_type"},

		{name: "sleep past timeLimitMs times out", typ: catalog.NameSleep, payload: `{"ms":10000,"timeLimitMs":50}`, attempt: 1,
			want: FailureTimeout, errHas: "50ms", minDur: 50 * time.Millisecond, check: notAbandoned},

		{name: "runtime panic is caught", typ: "boom", payload: `{}`, attempt: 1,
			want: FailurePanic, errHas: "assignment to entry in nil map"},
		{name: "panic value and stack are reported", typ: "boom_value", payload: `{}`, attempt: 1,
			want: FailurePanic, errHas: "kaboom", check: func(t *testing.T, out Outcome) {
				if !strings.Contains(out.Err.Error(), "goroutine") {
					t.Errorf("panic error lacks the stack: %v", out.Err)
				}
			}},
		{name: "forced failure skips a panicking job", typ: "boom", payload: `{"forceFailure":1}`, attempt: 1,
			want: FailureForced},

		{name: "job error is an error", typ: "failing", payload: `{}`, attempt: 1,
			want: FailureError, errIs: errDiskOnFire},
		{name: "job's own DeadlineExceeded is an error, not a timeout", typ: "own_deadline", payload: `{}`, attempt: 1,
			want: FailureError, errIs: context.DeadlineExceeded, maxDur: time.Second},

		{name: "job ignoring cancellation is abandoned after the grace", typ: "stubborn", payload: `{}`, attempt: 1,
			want: FailureTimeout, errHas: "abandoned", minDur: testLimit + testGrace},
		// The type's limit is a minute: ending within slack shows timeLimitMs applies.
		{name: "abandon uses the payload's timeLimitMs", typ: "stubborn_long", payload: `{"timeLimitMs":10}`, attempt: 1,
			want: FailureTimeout, errHas: "abandoned", minDur: 10*time.Millisecond + testGrace},
		{name: "success after the limit is a timeout", typ: "late", payload: `{}`, attempt: 1,
			want: FailureTimeout, minDur: testLimit + lateBy, check: func(t *testing.T, out Outcome) {
				notAbandoned(t, out)
				if out.Result.Output != nil {
					t.Errorf("timed-out attempt kept its result %s", out.Result.Output)
				}
			}},
	}
	exec := &Executor{Catalog: reg, AbandonGrace: testGrace}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var reports []float64
			out := exec.Execute(t.Context(), tt.typ, json.RawMessage(tt.payload), tt.attempt, func(f float64) { reports = append(reports, f) })

			if out.Failure != tt.want {
				t.Fatalf("Failure = %q (err %v), want %q", out.Failure, out.Err, tt.want)
			}
			switch {
			case tt.want == "" && out.Err != nil:
				t.Errorf("Err = %v on success", out.Err)
			case tt.want != "" && out.Err == nil:
				t.Errorf("Err = nil on failure %q", tt.want)
			}
			if tt.errIs != nil && !errors.Is(out.Err, tt.errIs) {
				t.Errorf("Err = %v, want errors.Is %v", out.Err, tt.errIs)
			}
			if tt.errHas != "" && (out.Err == nil || !strings.Contains(out.Err.Error(), tt.errHas)) {
				t.Errorf("Err = %v, want it to mention %q", out.Err, tt.errHas)
			}
			if tt.want == "" {
				if !json.Valid(out.Result.Output) {
					t.Errorf("output %q is not JSON", out.Result.Output)
				}
				if len(reports) > 0 && reports[len(reports)-1] != 1 {
					t.Errorf("progress %v does not end at 1", reports)
				}
			}
			maxDur := cmpOr(tt.maxDur, slack)
			if out.Duration <= 0 || out.Duration < tt.minDur || out.Duration > maxDur {
				t.Errorf("Duration = %s, want in (0, %s] and at least %s", out.Duration, maxDur, tt.minDur)
			}
			if tt.check != nil {
				tt.check(t, out)
			}
		})
	}
}

func cmpOr(d, fallback time.Duration) time.Duration {
	if d != 0 {
		return d
	}
	return fallback
}

// Forced attempts must not run the job at all; attempt k+1 runs it once.
func TestExecuteForcedAttemptsDoNotRun(t *testing.T) {
	t.Parallel()
	var ran atomic.Int32
	exec := &Executor{Catalog: testRegistry(t, nil, &ran)}
	const k = 3
	for attempt := 1; attempt <= k+1; attempt++ {
		out := exec.Execute(t.Context(), "counting", json.RawMessage(fmt.Sprintf(`{"forceFailure":%d}`, k)), attempt, nil)
		want := FailureForced
		if attempt > k {
			want = ""
		}
		if out.Failure != want {
			t.Errorf("attempt %d: Failure = %q (%v), want %q", attempt, out.Failure, out.Err, want)
		}
	}
	if got := ran.Load(); got != 1 {
		t.Errorf("job ran %d times over %d attempts with forceFailure %d, want 1", got, k+1, k)
	}
}

// An abandoned attempt returns while its job still runs; Execute must not wait for it.
func TestExecuteAbandonReturnsWhileJobRuns(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var finished atomic.Bool
	reg, err := catalog.NewRegistry(funcType{name: "hang", limit: 20 * time.Millisecond,
		fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			<-release
			finished.Store(true)
			return catalog.Result{Output: json.RawMessage(`{}`)}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer close(release)
	exec := &Executor{Catalog: reg, AbandonGrace: 50 * time.Millisecond}
	out := exec.Execute(t.Context(), "hang", json.RawMessage(`{}`), 1, nil)
	if out.Failure != FailureTimeout {
		t.Fatalf("Failure = %q (%v), want %q", out.Failure, out.Err, FailureTimeout)
	}
	if finished.Load() {
		t.Error("Execute waited for a job that ignores cancellation")
	}
}

// A zero AbandonGrace means AbandonGraceDefault, not "abandon at once".
func TestExecuteDefaultGrace(t *testing.T) {
	if testing.Short() {
		t.Skip("waits AbandonGraceDefault")
	}
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	reg, err := catalog.NewRegistry(funcType{name: "hang", limit: 10 * time.Millisecond,
		fn: func(context.Context, catalog.ProgressFunc) (catalog.Result, error) {
			<-release
			return catalog.Result{}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	out := (&Executor{Catalog: reg}).Execute(t.Context(), "hang", json.RawMessage(`{}`), 1, nil)
	if out.Failure != FailureTimeout {
		t.Fatalf("Failure = %q, want %q", out.Failure, FailureTimeout)
	}
	if least := 10*time.Millisecond + AbandonGraceDefault; out.Duration < least {
		t.Errorf("Duration = %s, want at least %s", out.Duration, least)
	}
}
