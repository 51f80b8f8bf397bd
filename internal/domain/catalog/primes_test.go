package catalog

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

type primesResult struct {
	Limit   int64   `json:"limit"`
	Count   int64   `json:"count"`
	Largest int64   `json:"largest"`
	Primes  []int64 `json:"primes"`
}

// trialDivisionPrimes lists the primes up to n by trial division: slow, obviously
// right, and independent of the sieve under test.
func trialDivisionPrimes(n int64) []int64 {
	var out []int64
	for x := int64(2); x <= n; x++ {
		prime := true
		for d := int64(2); d*d <= x; d++ {
			if x%d == 0 {
				prime = false
				break
			}
		}
		if prime {
			out = append(out, x)
		}
	}
	return out
}

func TestPrimesKnownCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limit, count, largest int64
	}{
		{2, 1, 2},
		{3, 2, 3},
		{4, 2, 3},
		{10, 4, 7},
		{100, 25, 97},
		{1000, 168, 997},
		{7919, 1000, 7919}, // the 1000th prime
		{100_000, 9592, 99991},
		{1_000_000, 78498, 999983},
		{2_000_003, 148934, 2_000_003}, // several segments, uneven last one, the limit itself prime
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			t.Parallel()
			got := decode[primesResult](t, run(t, NamePrimes, fmt.Sprintf(`{"limit":%d}`, tc.limit)))
			want := primesResult{Limit: tc.limit, Count: tc.count, Largest: tc.largest}
			if got.Primes != nil || got.Limit != want.Limit || got.Count != want.Count || got.Largest != want.Largest {
				t.Errorf("primes up to %d = %+v, want %+v", tc.limit, got, want)
			}
		})
	}
}

func TestPrimesList(t *testing.T) {
	t.Parallel()
	t.Run("up to 30", func(t *testing.T) {
		t.Parallel()
		got := decode[primesResult](t, run(t, NamePrimes, `{"limit":30,"list":true}`))
		want := []int64{2, 3, 5, 7, 11, 13, 17, 19, 23, 29}
		if !slices.Equal(got.Primes, want) || got.Count != 10 || got.Largest != 29 || got.Limit != 30 {
			t.Errorf("primes up to 30 = %+v, want %v", got, want)
		}
	})
	// Limits around the smallest segment (primesSegmentMin numbers), where an
	// off-by-one in the segment bounds would show, and the largest limit a list allows.
	for _, limit := range []int64{2, 3, 1<<15 - 1, 1 << 15, 1<<15 + 1, 1<<16 + 1, 3*(1<<15) + 7, PrimesListMax} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			t.Parallel()
			res := run(t, NamePrimes, fmt.Sprintf(`{"limit":%d,"list":true}`, limit))
			got := decode[primesResult](t, res)
			want := trialDivisionPrimes(limit)
			if !slices.Equal(got.Primes, want) {
				t.Fatalf("list up to %d has %d primes, want %d; first difference at %d",
					limit, len(got.Primes), len(want), firstDifference(got.Primes, want))
			}
			if got.Count != int64(len(want)) || got.Largest != want[len(want)-1] || got.Limit != limit {
				t.Errorf("primes up to %d: count %d, largest %d, limit %d; want %d, %d, %d",
					limit, got.Count, got.Largest, got.Limit, len(want), want[len(want)-1], limit)
			}
		})
	}
	t.Run("list false omits the list", func(t *testing.T) {
		t.Parallel()
		res := run(t, NamePrimes, `{"limit":30,"list":false}`)
		if want := `{"limit":30,"count":10,"largest":29}`; string(res.Output) != want {
			t.Errorf("output = %s, want %s", res.Output, want)
		}
		if res.Files != nil {
			t.Errorf("primes returned %d files, want none", len(res.Files))
		}
	})
}

func firstDifference(a, b []int64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestPrimesDeterministic(t *testing.T) {
	t.Parallel()
	for _, payload := range []string{`{"limit":1000000}`, `{"limit":5000,"list":true}`} {
		t.Run(payload, func(t *testing.T) {
			t.Parallel()
			checkDeterministic(t, NamePrimes, payload)
		})
	}
}

func TestPrimesCommonFields(t *testing.T) {
	t.Parallel()
	checkCommonFields(t, NamePrimes, `{"limit":1000,"list":true}`,
		`{"forceFailure":4,"limit":1000,"timeLimitMs":250,"list":true}`,
		Options{ForceFailure: 4, TimeLimit: 250 * time.Millisecond})
}

func TestPrimesProblems(t *testing.T) {
	t.Parallel()
	runProblemCases(t, NamePrimes, []problemCase{
		{"missing limit", `{}`, "limit", []string{"is required: must be an integer between 2 and 50000000"}},
		{"missing limit with list", `{"list":true}`, "limit", []string{"is required"}},
		{"limit string", `{"limit":"100"}`, "limit", []string{"must be an integer between 2 and 50000000", `got "100"`}},
		{"limit fraction", `{"limit":10.5}`, "limit", []string{"got 10.5"}},
		{"limit null", `{"limit":null}`, "limit", []string{"got null"}},
		{"limit array", `{"limit":[10]}`, "limit", []string{"got an array"}},
		{"limit too small", `{"limit":1}`, "limit", []string{"between 2 and 50000000, got 1"}},
		{"limit negative", `{"limit":-7}`, "limit", []string{"got -7"}},
		{"limit too large", `{"limit":50000001}`, "limit", []string{"between 2 and 50000000, got 50000001"}},
		{"limit overflows int64", `{"limit":99999999999999999999}`, "limit", []string{"got 99999999999999999999"}},
		{"list not boolean", `{"limit":10,"list":"yes"}`, "list", []string{`must be true or false, got "yes"`}},
		{"list number", `{"limit":10,"list":1}`, "list", []string{"must be true or false, got 1"}},
		{"list above its limit", `{"limit":100001,"list":true}`, "list", []string{"is only allowed when limit is at most 100000, got limit 100001"}},
		{"unknown field", `{"limit":10,"count":true}`, "count", []string{"is not an allowed field; allowed fields are: limit, list, forceFailure, timeLimitMs"}},
		{"not an object", `[{"limit":10}]`, "", []string{"must be a JSON object, got an array"}},
	})
	t.Run("all problems at once", func(t *testing.T) {
		t.Parallel()
		problems := problemsOf(t, NamePrimes, `{"limit":0,"list":"no"}`)
		var fields []string
		for _, p := range problems {
			fields = append(fields, p.Field)
		}
		if !slices.Equal(fields, []string{"limit", "list"}) {
			t.Errorf("problems = %+v, want one on limit and one on list", problems)
		}
	})
	t.Run("list allowed at its limit", func(t *testing.T) {
		t.Parallel()
		prepare(t, NamePrimes, fmt.Sprintf(`{"limit":%d,"list":true}`, PrimesListMax))
		prepare(t, NamePrimes, fmt.Sprintf(`{"limit":%d,"list":false}`, PrimesLimitMax))
	})
}

func TestPrimesCancel(t *testing.T) {
	t.Parallel()
	t.Run("midway", func(t *testing.T) {
		t.Parallel()
		checkCancelsMidway(t, NamePrimes, fmt.Sprintf(`{"limit":%d}`, PrimesLimitMax))
	})
	t.Run("before start", func(t *testing.T) {
		t.Parallel()
		checkPreCancelled(t, NamePrimes, `{"limit":1000}`)
	})
}

// TestPrimesProgress checks that a long run reports progress along the way, not
// just the final 1.0 (run checks the rest of the contract).
func TestPrimesProgress(t *testing.T) {
	t.Parallel()
	job, _ := prepare(t, NamePrimes, `{"limit":10000000}`)
	var reports []float64
	res, err := job.Run(t.Context(), func(x float64) { reports = append(reports, x) })
	if err != nil {
		t.Fatal(err)
	}
	checkProgress(t, reports)
	if len(reports) < 50 {
		t.Errorf("progress reported %d times, want about 100: %v", len(reports), reports)
	}
	if got := decode[primesResult](t, res); got.Count != 664579 || got.Largest != 9999991 {
		t.Errorf("primes up to 1e7 = %+v, want 664579 ending at 9999991", got)
	}
	if !strings.Contains(string(res.Output), `"limit":10000000`) {
		t.Errorf("output %s lacks the limit", res.Output)
	}
}
