package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
)

// primesSegmentMin is the smallest sieve segment, in numbers; larger limits use about
// 100 segments so that progress and ctx checks come about every 1%.
const primesSegmentMin = 1 << 15

type primesType struct{}

// Primes counts the primes up to a limit with a segmented sieve of Eratosthenes.
func Primes() Type { return primesType{} }

func (primesType) Spec() Spec {
	return Spec{
		Name:        NamePrimes,
		Description: "Counts the primes up to limit with a segmented sieve; optionally lists them.",
		Fields:      primesFields(),
		Example:     json.RawMessage(`{"limit":1000000}`),
		TimeLimit:   PrimesTimeLimit,
	}
}

func primesFields() []Field {
	return []Field{
		{
			Name: "limit", Type: TypeInteger, Required: true,
			Min: bound(PrimesLimitMin), Max: bound(PrimesLimitMax),
			Description: "Largest number to consider.",
		},
		{
			Name: "list", Type: TypeBoolean, Default: false,
			Description: fmt.Sprintf("Also list the primes; allowed only when limit is at most %d.", PrimesListMax),
		},
	}
}

func (primesType) Prepare(payload json.RawMessage) (Job, error) {
	var p problems
	v := decodeObject("", payload, primesFields(), &p)
	job := &primesJob{limit: v.int("limit"), list: v.bool("list")}
	if job.list && v.has("limit") && job.limit > PrimesListMax {
		p.add("list", "is only allowed when limit is at most %d, got limit %d", PrimesListMax, job.limit)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return job, nil
}

type primesJob struct {
	limit int64
	list  bool
}

type primesOutput struct {
	Limit   int64   `json:"limit"`
	Count   int64   `json:"count"`
	Largest int64   `json:"largest"`
	Primes  []int64 `json:"primes,omitempty"`
}

func (j *primesJob) Run(ctx context.Context, progress ProgressFunc) (Result, error) {
	pr := newProgress(progress)
	n := j.limit
	base := smallPrimes(isqrt(n))
	out := primesOutput{Limit: n, Count: 1, Largest: 2} // 2 is handled here; the sieve sees odd numbers only
	if j.list {
		out.Primes = []int64{2}
	}
	span := max(primesSegmentMin, (n+1)/100+1)
	span += span % 2 // even, so that every segment starts on an even number
	composite := make([]bool, span)
	for lo := int64(0); lo <= n; lo += span {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		hi := min(lo+span-1, n)
		clear(composite)
		for _, q := range base[1:] { // odd primes: mark their odd multiples from q*q
			start := max(q*q, (lo+q-1)/q*q)
			if start%2 == 0 {
				start += q
			}
			for m := start; m <= hi; m += 2 * q {
				composite[m-lo] = true
			}
		}
		for x := max(lo+1, 3); x <= hi; x += 2 {
			if !composite[x-lo] {
				out.Count++
				out.Largest = x
				if j.list {
					out.Primes = append(out.Primes, x)
				}
			}
		}
		pr.set(float64(hi) / float64(n))
	}
	data, err := json.Marshal(out)
	if err != nil {
		return Result{}, fmt.Errorf("encode primes output: %w", err)
	}
	pr.finish()
	return Result{Output: data}, nil
}

// smallPrimes returns the primes up to n (n >= 2) with a plain sieve.
func smallPrimes(n int64) []int64 {
	composite := make([]bool, n+1)
	var primes []int64
	for i := int64(2); i <= n; i++ {
		if composite[i] {
			continue
		}
		primes = append(primes, i)
		for m := i * i; m <= n; m += i {
			composite[m] = true
		}
	}
	return primes
}

// isqrt returns the largest r with r*r <= n, and at least 2.
func isqrt(n int64) int64 {
	r := int64(math.Sqrt(float64(n)))
	for r*r > n {
		r--
	}
	for (r+1)*(r+1) <= n {
		r++
	}
	return max(r, 2)
}
