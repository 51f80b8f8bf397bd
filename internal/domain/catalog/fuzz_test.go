package catalog

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// FuzzPrepare feeds arbitrary type names and payloads to Default().Prepare: it must
// never panic, fail only with an *UnknownTypeError (unknown name) or a *ValidationError
// (known name) listing problems, and otherwise return a job and options in range.
func FuzzPrepare(f *testing.F) {
	r := Default()
	names := r.Names()
	for _, spec := range r.Specs() {
		f.Add(spec.Name, []byte(spec.Example))
	}
	// A 1x1 PNG, so that the fuzzer reaches the image decoders through convert.
	const png1x1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
	valid := map[string][]string{
		NamePrimes:    {`{"limit":30,"list":true}`, `{"limit":2,"forceFailure":1,"timeLimitMs":10}`},
		NameCompress:  {`{"data":"abc","codec":"lzw"}`, `{"generate":{"size":10,"seed":-1,"kind":"zeros"},"codec":"zlib","level":9}`},
		NameConvert:   {`{"image":"` + png1x1 + `","to":"gif"}`, `{"generate":{"width":2,"height":3,"pattern":"checker"},"to":"png"}`},
		NameWordcount: {`{"text":"a b\nc","top":1}`},
		NameHash:      {`{"data":"","iterations":1}`},
		NameSleep:     {`{"ms":0}`},
		NameNoop:      {``, `null`, `{"forceFailure":100}`},
	}
	for name, payloads := range valid {
		for _, payload := range payloads {
			f.Add(name, []byte(payload))
		}
	}
	broken := []string{
		`{`, `}`, `{"limit":`, `{"limit":1e400}`, `{"a":1,"a":2}`, `[]`, `"x"`, `42`, `true`,
		`{"data":"\ud800"}`, `{"text":"\xff\xfe"}`, "{\"\xff\":1}", `{} {}`, `{"generate":{"size":1,"size":2}}`,
		`{"image":"!!","to":"png"}`, `{"forceFailure":-0.0,"timeLimitMs":1E3}`,
	}
	for _, name := range names {
		for _, payload := range broken {
			f.Add(name, []byte(payload))
		}
	}
	for _, name := range []string{"", "primez", "PRIMES", "noop ", "no\x00op"} {
		f.Add(name, []byte(`{}`))
	}

	f.Fuzz(func(t *testing.T, name string, payload []byte) {
		job, opts, err := r.Prepare(name, payload)
		known := slices.Contains(names, name)
		if err != nil {
			if job != nil || opts != (Options{}) {
				t.Errorf("Prepare returned a job (%T) or options (%+v) with error %v", job, opts, err)
			}
			var uerr *UnknownTypeError
			var verr *ValidationError
			switch {
			case errors.As(err, &uerr):
				if known || uerr.Name != name || !errors.Is(err, ErrUnknownType) || !slices.Equal(uerr.Known, names) {
					t.Errorf("Prepare(%q) = %#v, which is not a proper unknown-type error", name, err)
				}
			case errors.As(err, &verr):
				if !known || !errors.Is(err, ErrInvalidPayload) {
					t.Errorf("Prepare(%q) = %v: a validation error for a type that is not known", name, err)
				}
				if len(verr.Problems) == 0 || len(verr.Problems) > MaxProblems+1 {
					t.Errorf("validation error has %d problems: %v", len(verr.Problems), err)
				}
				for _, p := range verr.Problems {
					if p.Message == "" {
						t.Errorf("problem on %q has no message: %v", p.Field, err)
					}
				}
			default:
				t.Fatalf("Prepare(%q, %q) = %T %v, want an *UnknownTypeError or a *ValidationError", name, payload, err, err)
			}
			return
		}
		if !known || job == nil {
			t.Fatalf("Prepare(%q, %q) = %v, %+v, nil; want a job of a known type", name, payload, job, opts)
		}
		spec, err := r.Spec(name)
		if err != nil {
			t.Fatal(err)
		}
		if opts.ForceFailure < 0 || opts.ForceFailure > ForceFailureMax ||
			opts.TimeLimit < time.Millisecond || opts.TimeLimit > spec.TimeLimit {
			t.Errorf("options %+v out of range for %s (limit %s)", opts, name, spec.TimeLimit)
		}
	})
}
