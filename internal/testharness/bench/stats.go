package bench

import (
	"math"
	"slices"
	"time"
)

// Figure is one measured quantity over several runs: the median of the runs' values,
// with the smallest and the largest beside it.
type Figure struct {
	Scenario string    `json:"scenario"`
	Name     string    `json:"name"`
	Unit     string    `json:"unit"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	Runs     []float64 `json:"runs"`
	// Breakdown names the breakdown table the figure is printed in (cpu, calls, hops), if any.
	Breakdown string `json:"breakdown,omitempty"`
}

// Summarize returns the figure of values (one per run). With no values every field
// but the names is zero, and Runs is empty.
func Summarize(scenario, name, unit string, values []float64) Figure {
	f := Figure{Scenario: scenario, Name: name, Unit: unit, Runs: slices.Clone(values)}
	if len(values) == 0 {
		return f
	}
	s := slices.Clone(values)
	slices.Sort(s)
	f.Min, f.Max = s[0], s[len(s)-1]
	if n := len(s); n%2 == 1 {
		f.Median = s[n/2]
	} else {
		f.Median = (s[n/2-1] + s[n/2]) / 2
	}
	return f
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of ds by the nearest-rank method: the
// smallest value with at least q of the values at or below it. q = 1 is the maximum.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(q * float64(len(s))))
	return s[min(max(rank-1, 0), len(s)-1)]
}

// Millis is d in milliseconds.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
