package catalog

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Registry is an immutable set of task types, keyed by name. It is safe for concurrent use.
type Registry struct {
	entries map[string]entry
	names   []string // sorted
}

type entry struct {
	typ  Type
	spec Spec // with the common fields added and TimeLimitMs filled in
}

// Builtins returns a new instance of every built-in type.
func Builtins() []Type {
	return []Type{Primes(), Compress(), Convert(), Wordcount(), Hash(), Sleep(), Noop()}
}

// Default returns a registry of every built-in type. It panics only if a built-in
// type is broken, which the package tests rule out.
func Default() *Registry {
	r, err := NewRegistry(Builtins()...)
	if err != nil {
		panic(fmt.Sprintf("catalog: built-in types: %v", err))
	}
	return r
}

// NewRegistry returns a registry of types. Registering a name twice is an error, as is
// a Spec that is not valid (including an Example that does not validate).
func NewRegistry(types ...Type) (*Registry, error) {
	r := &Registry{entries: make(map[string]entry, len(types))}
	for i, t := range types {
		if t == nil {
			return nil, fmt.Errorf("register task type #%d: type is nil", i)
		}
		spec := t.Spec()
		if _, dup := r.entries[spec.Name]; dup {
			return nil, fmt.Errorf("register task type %q: registered twice", spec.Name)
		}
		e, err := newEntry(t, spec)
		if err != nil {
			return nil, fmt.Errorf("register task type %q: %w", spec.Name, err)
		}
		r.entries[spec.Name] = e
	}
	r.names = slices.Sorted(maps.Keys(r.entries))
	return r, nil
}

func newEntry(t Type, spec Spec) (entry, error) {
	if err := checkSpec(spec); err != nil {
		return entry{}, err
	}
	spec = cloneSpec(spec)
	spec.TimeLimitMs = spec.TimeLimit.Milliseconds()
	spec.Fields = append(spec.Fields, commonFields(spec.TimeLimitMs)...)
	e := entry{typ: t, spec: spec}
	if _, _, err := e.prepare(spec.Example); err != nil {
		return entry{}, fmt.Errorf("example %s does not validate: %w", spec.Example, err)
	}
	return e, nil
}

// commonFields are the payload fields every type accepts; Registry.Prepare handles them.
func commonFields(limitMs int64) []Field {
	return []Field{
		{
			Name: FieldForceFailure, Type: TypeInteger, Default: 0,
			Min: bound(0), Max: bound(ForceFailureMax),
			Description: "Number of first attempts that fail on purpose, to exercise retries.",
		},
		{
			Name: FieldTimeLimitMs, Type: TypeInteger, Default: limitMs,
			Min: bound(1), Max: bound(float64(limitMs)),
			Description: "Time limit of one attempt, in milliseconds; at most the type's limit, which is the default.",
		},
	}
}

// Names returns the registered type names, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Specs returns the spec of every type, sorted by name, with the common fields included.
func (r *Registry) Specs() []Spec {
	specs := make([]Spec, len(r.names))
	for i, name := range r.names {
		specs[i] = cloneSpec(r.entries[name].spec)
	}
	return specs
}

// Spec returns the spec of one type, with the common fields included.
func (r *Registry) Spec(name string) (Spec, error) {
	e, err := r.entry(name)
	if err != nil {
		return Spec{}, err
	}
	return cloneSpec(e.spec), nil
}

// Lookup returns the type called name, or an *UnknownTypeError (errors.Is ErrUnknownType).
func (r *Registry) Lookup(name string) (Type, error) {
	e, err := r.entry(name)
	if err != nil {
		return nil, err
	}
	return e.typ, nil
}

func (r *Registry) entry(name string) (entry, error) {
	e, ok := r.entries[name]
	if !ok {
		return entry{}, &UnknownTypeError{Name: name, Known: r.Names()}
	}
	return e, nil
}

// Prepare validates a payload for the type called name. It handles the common fields
// (forceFailure, timeLimitMs) itself, rejects unknown fields, and passes the rest to the
// type. Errors are an *UnknownTypeError or a *ValidationError listing every problem found.
func (r *Registry) Prepare(name string, payload json.RawMessage) (Job, Options, error) {
	e, err := r.entry(name)
	if err != nil {
		return nil, Options{}, err
	}
	return e.prepare(payload)
}

func (e entry) prepare(payload json.RawMessage) (Job, Options, error) {
	var p problems
	if len(payload) > MaxPayloadBytes {
		p.add("", "must be at most %d bytes, got %d", MaxPayloadBytes, len(payload))
		return nil, Options{}, p.err()
	}
	obj, order, err := parseObject(payload)
	if err != nil {
		p.add("", "%s", err)
		return nil, Options{}, p.err()
	}
	for _, name := range order {
		if fieldIndex(e.spec.Fields, name) < 0 {
			p.add(join("", name), "is not an allowed field; allowed fields are: %s", fieldNames(e.spec.Fields))
			delete(obj, name)
		}
	}
	opts := Options{TimeLimit: e.spec.TimeLimit}
	common := decodeCommon(obj, e.spec.TimeLimitMs, &p)
	if common.has(FieldForceFailure) {
		opts.ForceFailure = int(common.int(FieldForceFailure))
	}
	if common.sentField(FieldTimeLimitMs) && common.has(FieldTimeLimitMs) {
		opts.TimeLimit = time.Duration(common.int(FieldTimeLimitMs)) * time.Millisecond
	}
	rest := payload
	if len(obj) != len(order) {
		if rest, err = json.Marshal(obj); err != nil {
			p.add("", "could not be re-encoded: %v", err)
			return nil, Options{}, p.err()
		}
	}
	job, err := e.typ.Prepare(rest)
	if err != nil {
		p.merge(err)
	}
	if err := p.err(); err != nil {
		return nil, Options{}, err
	}
	if job == nil {
		return nil, Options{}, errors.New("prepare: type returned neither a job nor an error")
	}
	return job, opts, nil
}

// decodeCommon checks the common fields of obj and removes them from it.
func decodeCommon(obj map[string]json.RawMessage, limitMs int64, p *problems) *values {
	v := &values{sent: map[string]bool{}, vals: map[string]any{}}
	for _, f := range commonFields(limitMs) {
		raw, ok := obj[f.Name]
		if !ok {
			continue
		}
		delete(obj, f.Name)
		v.sent[f.Name] = true
		if x, ok := decodeValue(f.Name, raw, f, p); ok {
			v.vals[f.Name] = x
		}
	}
	return v
}

// checkSpec reports what is wrong with a type's own Spec.
func checkSpec(s Spec) error {
	var errs []error
	if !validTypeName(s.Name) {
		errs = append(errs, fmt.Errorf("name %q is not 1 to 32 of [a-z0-9_] starting with a letter", s.Name))
	}
	if s.Description == "" {
		errs = append(errs, errors.New("description is empty"))
	}
	if s.TimeLimit < time.Millisecond {
		errs = append(errs, fmt.Errorf("time limit %s is less than 1ms", s.TimeLimit))
	}
	if s.TimeLimitMs != 0 && s.TimeLimitMs != s.TimeLimit.Milliseconds() {
		errs = append(errs, fmt.Errorf("time_limit_ms %d does not match time limit %s", s.TimeLimitMs, s.TimeLimit))
	}
	if len(bytes.TrimSpace(s.Example)) == 0 {
		errs = append(errs, errors.New("example is empty"))
	}
	for _, f := range s.Fields {
		if f.Name == FieldForceFailure || f.Name == FieldTimeLimitMs {
			errs = append(errs, fmt.Errorf("field %q is reserved for the common fields", f.Name))
		}
	}
	errs = append(errs, checkFields("", s.Fields)...)
	return errors.Join(errs...)
}

func checkFields(path string, fields []Field) []error {
	var errs []error
	seen := map[string]bool{}
	for _, f := range fields {
		name := join(path, f.Name)
		if f.Name == "" {
			errs = append(errs, fmt.Errorf("a field of %q has no name", path))
			continue
		}
		if seen[f.Name] {
			errs = append(errs, fmt.Errorf("field %q is listed twice", name))
		}
		seen[f.Name] = true
		errs = append(errs, checkField(name, f)...)
	}
	return errs
}

func checkField(name string, f Field) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("field %q: %s", name, fmt.Sprintf(format, args...)))
	}
	numeric := f.Type == TypeInteger || f.Type == TypeNumber
	switch {
	case !slices.Contains([]string{TypeInteger, TypeNumber, TypeString, TypeBoolean, TypeObject}, f.Type):
		fail("unknown type %q", f.Type)
	case f.Description == "":
		fail("description is empty")
	case (f.Min != nil || f.Max != nil) && !numeric:
		fail("min and max apply only to numbers")
	case f.Min != nil && f.Max != nil && *f.Min > *f.Max:
		fail("min %v is above max %v", *f.Min, *f.Max)
	case (len(f.Enum) > 0 || f.MaxBytes != 0) && f.Type != TypeString:
		fail("enum and max_bytes apply only to strings")
	case f.MaxBytes < 0:
		fail("max_bytes %d is negative", f.MaxBytes)
	case len(f.Fields) > 0 && f.Type != TypeObject:
		fail("fields apply only to objects")
	case f.Required && f.Default != nil:
		fail("a required field has no default")
	}
	if f.Default != nil {
		raw, err := json.Marshal(f.Default)
		var p problems
		if err == nil {
			decodeValue(name, raw, f, &p)
		}
		if err != nil || !p.empty() {
			fail("default %v is not valid: %v", f.Default, cmp.Or(err, p.err()))
		}
	}
	if f.Type == TypeObject {
		errs = append(errs, checkFields(name, f.Fields)...)
	}
	return errs
}

// validTypeName reports whether name is 1 to 32 of [a-z0-9_], starting with a letter:
// names appear in URLs, state keys and metric labels.
func validTypeName(name string) bool {
	if len(name) == 0 || len(name) > 32 || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func cloneSpec(s Spec) Spec {
	s.Fields = cloneFields(s.Fields)
	s.Example = bytes.Clone(s.Example)
	return s
}

func cloneFields(fields []Field) []Field {
	if fields == nil {
		return nil
	}
	out := make([]Field, len(fields))
	for i, f := range fields {
		if f.Min != nil {
			f.Min = bound(*f.Min)
		}
		if f.Max != nil {
			f.Max = bound(*f.Max)
		}
		f.Enum = slices.Clone(f.Enum)
		f.Fields = cloneFields(f.Fields)
		out[i] = f
	}
	return out
}
