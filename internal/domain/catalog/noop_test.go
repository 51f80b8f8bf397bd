package catalog

import (
	"testing"
	"time"
)

func TestNoopResult(t *testing.T) {
	t.Parallel()
	for _, payload := range []string{``, `null`, `{}`, " { } ", `{"forceFailure":0}`, `{"timeLimitMs":1}`} {
		t.Run(payload, func(t *testing.T) {
			t.Parallel()
			job, _ := prepare(t, NameNoop, payload)
			var reports []float64
			res, err := job.Run(t.Context(), func(x float64) { reports = append(reports, x) })
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Output) != `{}` || res.Files != nil {
				t.Errorf("result = %s with %d files, want {} and no files", res.Output, len(res.Files))
			}
			if len(reports) != 1 || reports[0] != 1 {
				t.Errorf("progress = %v, want [1]", reports)
			}
		})
	}
	t.Run("nil progress", func(t *testing.T) {
		t.Parallel()
		job, _ := prepare(t, NameNoop, `{}`)
		if res, err := job.Run(t.Context(), nil); err != nil || string(res.Output) != `{}` {
			t.Errorf("Run(nil progress) = %s, %v", res.Output, err)
		}
	})
}

func TestNoopDeterministic(t *testing.T) {
	t.Parallel()
	checkDeterministic(t, NameNoop, `{}`)
}

func TestNoopCommonFields(t *testing.T) {
	t.Parallel()
	checkCommonFields(t, NameNoop, `{}`, `{"forceFailure":7,"timeLimitMs":10000}`,
		Options{ForceFailure: 7, TimeLimit: 10 * time.Second})
}

func TestNoopProblems(t *testing.T) {
	t.Parallel()
	runProblemCases(t, NameNoop, []problemCase{
		{"unknown field", `{"ms":1}`, "ms", []string{"is not an allowed field; allowed fields are: forceFailure, timeLimitMs"}},
		{"unknown null field", `{"x":null}`, "x", []string{"is not an allowed field"}},
		{"boolean payload", `true`, "", []string{"must be a JSON object, got a boolean"}},
		{"broken JSON", `{"x"}`, "", []string{"is not valid JSON"}},
		{"force failure too high", `{"forceFailure":1000}`, FieldForceFailure, []string{"between 0 and 100, got 1000"}},
		{"time limit above noop's", `{"timeLimitMs":10001}`, FieldTimeLimitMs, []string{"between 1 and 10000, got 10001"}},
	})
}

func TestNoopCancel(t *testing.T) {
	t.Parallel()
	checkPreCancelled(t, NameNoop, `{}`)
}
