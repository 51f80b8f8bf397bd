package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// prepare prepares a payload through the default registry and fails the test on error.
func prepare(t *testing.T, name, payload string) (Job, Options) {
	t.Helper()
	job, opts, err := Default().Prepare(name, json.RawMessage(payload))
	if err != nil {
		t.Fatalf("Prepare(%s, %s): %v", name, payload, err)
	}
	return job, opts
}

// run prepares and runs a payload, checking the progress contract on the way.
func run(t *testing.T, name, payload string) Result {
	t.Helper()
	job, _ := prepare(t, name, payload)
	var reports []float64
	res, err := job.Run(t.Context(), func(x float64) { reports = append(reports, x) })
	if err != nil {
		t.Fatalf("Run(%s, %s): %v", name, payload, err)
	}
	checkProgress(t, reports)
	for _, f := range res.Files {
		if !validSuffix(f.Suffix) {
			t.Errorf("file suffix %q is not [a-z0-9]{1,8}", f.Suffix)
		}
	}
	if !json.Valid(res.Output) {
		t.Errorf("output is not JSON: %s", res.Output)
	}
	return res
}

// checkProgress checks Job.Run's promise: values in [0,1], monotonic, about 100 at
// most, the last one 1.0.
func checkProgress(t *testing.T, reports []float64) {
	t.Helper()
	if len(reports) == 0 {
		t.Fatal("no progress reported")
	}
	if len(reports) > 101 {
		t.Errorf("progress reported %d times, want at most 101", len(reports))
	}
	if !slices.IsSorted(reports) {
		t.Errorf("progress is not monotonic: %v", reports)
	}
	if reports[0] < 0 || reports[len(reports)-1] != 1 {
		t.Errorf("progress = %v, want values in [0,1] ending at 1", reports)
	}
}

func validSuffix(s string) bool {
	if len(s) < 1 || len(s) > 8 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// decode unmarshals a result's output.
func decode[T any](t *testing.T, res Result) T {
	t.Helper()
	var out T
	if err := json.Unmarshal(res.Output, &out); err != nil {
		t.Fatalf("decode output %s: %v", res.Output, err)
	}
	return out
}

// problemsOf prepares a payload that must not validate and returns its problems.
func problemsOf(t *testing.T, name, payload string) []Problem {
	t.Helper()
	job, _, err := Default().Prepare(name, json.RawMessage(payload))
	if err == nil {
		t.Fatalf("Prepare(%s, %s) = %T, want an error", name, payload, job)
	}
	if job != nil {
		t.Errorf("Prepare returned a job and an error")
	}
	if !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("error %v is not ErrInvalidPayload", err)
	}
	var verr *ValidationError
	if !errors.As(err, &verr) || len(verr.Problems) == 0 {
		t.Fatalf("error %v is not a *ValidationError with problems", err)
	}
	return verr.Problems
}

// problemCase is a payload that must fail with a problem on field whose message
// contains each of want.
type problemCase struct {
	name    string
	payload string
	field   string
	want    []string
}

func runProblemCases(t *testing.T, typ string, cases []problemCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			problems := problemsOf(t, typ, tc.payload)
			for _, p := range problems {
				if p.Field == tc.field && containsAll(p.Message, tc.want) {
					return
				}
			}
			t.Errorf("problems = %+v, want one on %q containing %q", problems, tc.field, tc.want)
		})
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// cancelOnFirstProgress runs job with a context it cancels at the first progress
// report, and returns what Run returned.
func cancelOnFirstProgress(t *testing.T, job Job) error {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := job.Run(ctx, func(float64) { cancel() })
	return err
}

// sameResult fails unless a and b have byte-identical Output and Files.
func sameResult(t *testing.T, a, b Result) {
	t.Helper()
	if !bytes.Equal(a.Output, b.Output) {
		t.Errorf("outputs differ:\n%s\n%s", a.Output, b.Output)
	}
	if len(a.Files) != len(b.Files) {
		t.Fatalf("runs gave %d and %d files", len(a.Files), len(b.Files))
	}
	for i := range a.Files {
		if a.Files[i].Suffix != b.Files[i].Suffix || !bytes.Equal(a.Files[i].Data, b.Files[i].Data) {
			t.Errorf("file %d differs: %q (%d bytes) and %q (%d bytes)",
				i, a.Files[i].Suffix, len(a.Files[i].Data), b.Files[i].Suffix, len(b.Files[i].Data))
		}
	}
}

// checkDeterministic runs a payload twice, each time through a fresh Prepare, and
// fails unless both runs give byte-identical results. It returns the first result.
func checkDeterministic(t *testing.T, name, payload string) Result {
	t.Helper()
	first := run(t, name, payload)
	sameResult(t, first, run(t, name, payload))
	return first
}

// checkCommonFields checks that the common fields in withCommon reach Options as want
// and leave the job alone: it gives the same result as plain, the same payload without
// them. Failing attempts on purpose (forceFailure) is up to the worker, not the job.
func checkCommonFields(t *testing.T, name, plain, withCommon string, want Options) {
	t.Helper()
	if _, opts := prepare(t, name, withCommon); opts != want {
		t.Errorf("options of %s = %+v, want %+v", withCommon, opts, want)
	}
	sameResult(t, run(t, name, plain), run(t, name, withCommon))
}

// checkPreCancelled checks that a job run with a context already cancelled returns
// context.Canceled and no result.
func checkPreCancelled(t *testing.T, name, payload string) {
	t.Helper()
	job, _ := prepare(t, name, payload)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res, err := job.Run(ctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context = %v, want context.Canceled", err)
	}
	if res.Output != nil || res.Files != nil {
		t.Errorf("Run with a cancelled context returned a result: %s, %d files", res.Output, len(res.Files))
	}
}

// checkCancelsMidway checks that cancelling a long job at its first progress report
// stops it with context.Canceled at its next check, rather than letting it go on: no
// progress may follow the report that cancelled it. (Jobs that may legitimately report
// again before their next check use cancelOnFirstProgress instead.)
func checkCancelsMidway(t *testing.T, name, payload string) {
	t.Helper()
	job, _ := prepare(t, name, payload)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var reports []float64
	_, err := job.Run(ctx, func(x float64) {
		reports = append(reports, x)
		cancel()
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run cancelled at its first progress report = %v, want context.Canceled", err)
	}
	if len(reports) != 1 || reports[0] >= 1 {
		t.Errorf("progress = %v, want one report below 1 and none after the cancellation", reports)
	}
}
