package catalog

import (
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
		if !validSuffix(f.Name) {
			t.Errorf("file name %q is not [a-z0-9]{1,8}", f.Name)
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
