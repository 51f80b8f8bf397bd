package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeType is a Type with a settable Spec, for registry tests.
type fakeType struct{ spec Spec }

func (f fakeType) Spec() Spec { return f.spec }

func (f fakeType) Prepare(payload json.RawMessage) (Job, error) {
	var p problems
	decodeObject("", payload, f.spec.Fields, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return noopJob{}, nil
}

func validFake() Spec {
	return Spec{
		Name: "fake", Description: "A fake.", TimeLimit: time.Second, Example: json.RawMessage(`{"n":1}`),
		Fields: []Field{{Name: "n", Type: TypeInteger, Description: "A number.", Min: bound(0), Max: bound(9)}},
	}
}

func TestDefault(t *testing.T) {
	t.Parallel()
	r := Default()
	want := []string{NameCompress, NameConvert, NameHash, NameNoop, NamePrimes, NameSleep, NameWordcount}
	if got := r.Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	limits := map[string]time.Duration{
		NamePrimes: 60 * time.Second, NameCompress: 60 * time.Second, NameConvert: 60 * time.Second,
		NameWordcount: 30 * time.Second, NameHash: 60 * time.Second, NameSleep: 60 * time.Second, NameNoop: 10 * time.Second,
	}
	specs := r.Specs()
	if len(specs) != len(want) {
		t.Fatalf("Specs() has %d specs, want %d", len(specs), len(want))
	}
	for i, spec := range specs {
		t.Run(spec.Name, func(t *testing.T) {
			t.Parallel()
			if spec.Name != want[i] {
				t.Errorf("spec %d is %q, want %q", i, spec.Name, want[i])
			}
			if spec.TimeLimit != limits[spec.Name] || spec.TimeLimitMs != limits[spec.Name].Milliseconds() {
				t.Errorf("time limit = %s (%d ms), want %s", spec.TimeLimit, spec.TimeLimitMs, limits[spec.Name])
			}
			for _, common := range []string{FieldForceFailure, FieldTimeLimitMs} {
				if fieldIndex(spec.Fields, common) < 0 {
					t.Errorf("spec lacks common field %s", common)
				}
			}
			// Each spec's Example validates, with the type's default options.
			_, opts, err := r.Prepare(spec.Name, spec.Example)
			if err != nil {
				t.Fatalf("example %s: %v", spec.Example, err)
			}
			if opts != (Options{TimeLimit: spec.TimeLimit}) {
				t.Errorf("example options = %+v, want the defaults", opts)
			}
			typ, err := r.Lookup(spec.Name)
			if err != nil || typ.Spec().Name != spec.Name {
				t.Errorf("Lookup(%s) = %v, %v", spec.Name, typ, err)
			}
		})
	}
}

func TestSpecJSON(t *testing.T) {
	t.Parallel()
	spec, err := Default().Spec(NamePrimes)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"name":"primes"`, `"time_limit_ms":60000`, `"example":{"limit":1000000}`,
		`{"name":"limit","type":"integer","description":"Largest number to consider.","required":true,"min":2,"max":50000000}`,
		`{"name":"list","type":"boolean","description":`, `"required":false,"default":false}`,
		`{"name":"timeLimitMs","type":"integer",`, `"min":1,"max":60000,"default":60000}`,
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("spec JSON lacks %s:\n%s", want, data)
		}
	}
	if strings.Contains(string(data), "TimeLimit\"") {
		t.Errorf("spec JSON has the Go duration: %s", data)
	}
}

// TestSpecsAreCopies checks that a caller changing a returned Spec does not change the registry.
func TestSpecsAreCopies(t *testing.T) {
	t.Parallel()
	r := Default()
	specs := r.Specs()
	checked := 0
	for _, s := range specs {
		for i, f := range s.Fields {
			if f.Min == nil {
				continue
			}
			*s.Fields[i].Min = -100
			s.Fields[i].Name = "changed"
			s.Example[0] = 'x'
			again, err := r.Spec(s.Name)
			if err != nil {
				t.Fatal(err)
			}
			if again.Fields[i].Name == "changed" || *again.Fields[i].Min == -100 || again.Example[0] == 'x' {
				t.Errorf("changing a returned spec changed the registry: %+v", again)
			}
			checked++
			break
		}
	}
	if checked == 0 {
		t.Fatal("no spec has a field with a minimum to change")
	}
	names := r.Names()
	names[0] = "changed"
	if r.Names()[0] == "changed" {
		t.Error("changing Names() changed the registry")
	}
}

func TestNewRegistryErrors(t *testing.T) {
	t.Parallel()
	with := func(change func(*Spec)) Type {
		s := validFake()
		change(&s)
		return fakeType{spec: s}
	}
	field := func(change func(*Field)) Type {
		return with(func(s *Spec) { change(&s.Fields[0]); s.Example = json.RawMessage(`{}`) })
	}
	tests := []struct {
		name  string
		types []Type
		want  string
	}{
		{"duplicate", []Type{fakeType{validFake()}, fakeType{validFake()}}, `"fake": registered twice`},
		{"duplicate builtin", []Type{Noop(), Primes(), Noop()}, `"noop": registered twice`},
		{"nil", []Type{nil}, "type is nil"},
		{"bad name", []Type{with(func(s *Spec) { s.Name = "Fake Type" })}, "is not 1 to 32 of [a-z0-9_]"},
		{"empty name", []Type{with(func(s *Spec) { s.Name = "" })}, "is not 1 to 32"},
		{"no description", []Type{with(func(s *Spec) { s.Description = "" })}, "description is empty"},
		{"no time limit", []Type{with(func(s *Spec) { s.TimeLimit = 0 })}, "less than 1ms"},
		{"ms mismatch", []Type{with(func(s *Spec) { s.TimeLimitMs = 5 })}, "does not match"},
		{"no example", []Type{with(func(s *Spec) { s.Example = nil })}, "example is empty"},
		{"invalid example", []Type{with(func(s *Spec) { s.Example = json.RawMessage(`{"n":10}`) })}, "does not validate"},
		{"example unknown field", []Type{with(func(s *Spec) { s.Example = json.RawMessage(`{"m":1}`) })}, "does not validate"},
		{"reserved field", []Type{with(func(s *Spec) { s.Fields[0].Name = FieldTimeLimitMs })}, "reserved"},
		{"duplicate field", []Type{with(func(s *Spec) { s.Fields = append(s.Fields, s.Fields[0]) })}, "listed twice"},
		{"unknown field type", []Type{field(func(f *Field) { f.Type = "date" })}, `unknown type "date"`},
		{"min above max", []Type{field(func(f *Field) { f.Min = bound(10) })}, "above max"},
		{"enum on integer", []Type{field(func(f *Field) { f.Enum = []string{"a"} })}, "only to strings"},
		{"bounds on string", []Type{field(func(f *Field) { f.Type = TypeString })}, "only to numbers"},
		{"invalid default", []Type{field(func(f *Field) { f.Default = 10 })}, "default 10 is not valid"},
		{"required default", []Type{field(func(f *Field) { f.Required, f.Default = true, 1 })}, "required field has no default"},
		{"no field description", []Type{field(func(f *Field) { f.Description = "" })}, "description is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistry(tc.types...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewRegistry() = %v, %v; want an error containing %q", r, err, tc.want)
			}
		})
	}
}

func TestUnknownType(t *testing.T) {
	t.Parallel()
	r := Default()
	_, err := r.Lookup("primez")
	check := func(err error) {
		t.Helper()
		var uerr *UnknownTypeError
		if !errors.Is(err, ErrUnknownType) || !errors.As(err, &uerr) {
			t.Fatalf("error %v is not an *UnknownTypeError", err)
		}
		if uerr.Name != "primez" || !slices.Equal(uerr.Known, r.Names()) {
			t.Errorf("error = %+v", uerr)
		}
		want := `unknown task type "primez"; known types are: compress, convert, hash, noop, primes, sleep, wordcount`
		if err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	}
	check(err)
	_, _, err = r.Prepare("primez", nil)
	check(err)
	if _, err := r.Spec("primez"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("Spec(primez) error = %v", err)
	}
}

func TestPrepareOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, payload string
		want               Options
	}{
		{"defaults", NameNoop, `{}`, Options{TimeLimit: NoopTimeLimit}},
		{"null payload", NameNoop, `null`, Options{TimeLimit: NoopTimeLimit}},
		{"empty payload", NameNoop, ``, Options{TimeLimit: NoopTimeLimit}},
		{"whitespace", NameNoop, " \n{ } \t", Options{TimeLimit: NoopTimeLimit}},
		{"force failure", NameNoop, `{"forceFailure":3}`, Options{ForceFailure: 3, TimeLimit: NoopTimeLimit}},
		{"force failure max", NameNoop, `{"forceFailure":100}`, Options{ForceFailure: 100, TimeLimit: NoopTimeLimit}},
		{"time limit", NameSleep, `{"ms":1,"timeLimitMs":1500}`, Options{TimeLimit: 1500 * time.Millisecond}},
		{"time limit max", NameSleep, `{"ms":1,"timeLimitMs":60000}`, Options{TimeLimit: time.Minute}},
		{"both", NamePrimes, `{"timeLimitMs":1,"limit":10,"forceFailure":0}`, Options{TimeLimit: time.Millisecond}},
		{"integral float", NameNoop, `{"forceFailure":2.0}`, Options{ForceFailure: 2, TimeLimit: NoopTimeLimit}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, opts := prepare(t, tc.typ, tc.payload)
			if opts != tc.want {
				t.Errorf("options = %+v, want %+v", opts, tc.want)
			}
		})
	}
}

func TestPrepareCommonProblems(t *testing.T) {
	t.Parallel()
	big := `{"data":"` + strings.Repeat("a", MaxPayloadBytes) + `"}`
	runProblemCases(t, NameNoop, []problemCase{
		{"array payload", `[]`, "", []string{"must be a JSON object, got an array"}},
		{"string payload", `"x"`, "", []string{"must be a JSON object, got a string"}},
		{"number payload", `3`, "", []string{"must be a JSON object, got a number"}},
		{"invalid JSON", `{"a":`, "", []string{"is not valid JSON"}},
		{"trailing data", `{} {}`, "", []string{"is not valid JSON"}},
		{"too large", big, "", []string{"must be at most 16777216 bytes"}},
		{"duplicate field", `{"forceFailure":1,"forceFailure":2}`, "", []string{`has the field "forceFailure" more than once`}},
		{"unknown field", `{"nope":1}`, "nope", []string{"is not an allowed field; allowed fields are: forceFailure, timeLimitMs"}},
		{"force failure high", `{"forceFailure":101}`, FieldForceFailure, []string{"must be an integer between 0 and 100, got 101"}},
		{"force failure negative", `{"forceFailure":-1}`, FieldForceFailure, []string{"between 0 and 100, got -1"}},
		{"force failure string", `{"forceFailure":"1"}`, FieldForceFailure, []string{`got "1"`}},
		{"force failure fraction", `{"forceFailure":1.5}`, FieldForceFailure, []string{"got 1.5"}},
		{"force failure null", `{"forceFailure":null}`, FieldForceFailure, []string{"got null"}},
		{"time limit zero", `{"timeLimitMs":0}`, FieldTimeLimitMs, []string{"must be an integer between 1 and 10000, got 0"}},
		{"time limit above type's", `{"timeLimitMs":10001}`, FieldTimeLimitMs, []string{"between 1 and 10000, got 10001"}},
		{"time limit huge", `{"timeLimitMs":1e300}`, FieldTimeLimitMs, []string{"got 1e300"}},
		{"time limit bool", `{"timeLimitMs":true}`, FieldTimeLimitMs, []string{"got true"}},
	})
	runProblemCases(t, NamePrimes, []problemCase{
		{"unknown field lists all fields", `{"limit":5,"max":1}`, "max", []string{"allowed fields are: limit, list, forceFailure, timeLimitMs"}},
		{"long unknown field is clipped", `{"limit":5,"` + strings.Repeat("x", 1000) + `":1}`, strings.Repeat("x", 64) + "…", nil},
	})
}

// TestPrepareReportsAllProblems checks that the common fields, unknown fields and the
// type's own fields are all reported at once.
func TestPrepareReportsAllProblems(t *testing.T) {
	t.Parallel()
	problems := problemsOf(t, NamePrimes, `{"limit":"x","list":1,"forceFailure":-1,"timeLimitMs":0,"extra":true}`)
	var fields []string
	for _, p := range problems {
		fields = append(fields, p.Field)
	}
	want := []string{"extra", FieldForceFailure, FieldTimeLimitMs, "limit", "list"}
	if !slices.Equal(fields, want) {
		t.Errorf("problem fields = %v, want %v (%+v)", fields, want, problems)
	}
	_, _, err := Default().Prepare(NamePrimes, json.RawMessage(`{"limit":1,"forceFailure":-1}`))
	wantMsg := "invalid payload: forceFailure must be an integer between 0 and 100, got -1; " +
		"limit must be an integer between 2 and 50000000, got 1"
	if err == nil || err.Error() != wantMsg {
		t.Errorf("error = %v, want %s", err, wantMsg)
	}
}

func TestProblemsAreCapped(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("{")
	for i := range 50 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"f` + strings.Repeat("x", i) + `":1`)
	}
	b.WriteString("}")
	problems := problemsOf(t, NameNoop, b.String())
	if len(problems) != MaxProblems+1 {
		t.Fatalf("got %d problems, want %d", len(problems), MaxProblems+1)
	}
	if last := problems[MaxProblems]; last.Message != "has 30 more problems not listed" {
		t.Errorf("last problem = %+v", last)
	}
}

// TestRegistryCustomType checks that a type outside the catalog registers and prepares.
func TestRegistryCustomType(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry(fakeType{validFake()}, Noop())
	if err != nil {
		t.Fatal(err)
	}
	job, opts, err := r.Prepare("fake", json.RawMessage(`{"n":3,"timeLimitMs":200}`))
	if err != nil || job == nil || opts.TimeLimit != 200*time.Millisecond {
		t.Fatalf("Prepare = %v, %+v, %v", job, opts, err)
	}
	if _, err := job.Run(context.Background(), nil); err != nil {
		t.Errorf("Run: %v", err)
	}
	if problems := problemsOf(t, "noop", `{"n":3}`); problems[0].Field != "n" {
		t.Errorf("noop accepted a field of fake: %+v", problems)
	}
}
