// Package catalog is the fixed catalog of compute task types: for each type, its payload
// schema (Spec), the validation of a payload into a runnable Job, and the computation.
//
// It is pure Go: no Dapr, no I/O beyond memory, and no global mutable state. Every
// result is deterministic for a given payload.
package catalog

import (
	"context"
	"encoding/json"
	"time"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// Type is one kind of task.
type Type interface {
	// Spec describes the type. Its Fields are the type's own payload fields; the
	// Registry adds the common fields (forceFailure, timeLimitMs) to what it reports.
	Spec() Spec
	// Prepare decodes and validates a payload (type-specific fields only) into a runnable Job.
	// It returns a *ValidationError on bad input.
	Prepare(payload json.RawMessage) (Job, error)
}

// Job is a validated task, ready to run.
type Job interface {
	// Run computes the result. It checks ctx between chunks of work and returns ctx.Err()
	// promptly when cancelled, and calls progress (which may be nil) with a fraction in
	// [0,1] as work advances: at most about 100 calls per run, monotonic, the last one 1.0.
	Run(ctx context.Context, progress ProgressFunc) (Result, error)
}

// ProgressFunc receives the fraction of a run done so far, in [0,1].
type ProgressFunc func(fraction float64)

// Result of a run.
type Result struct {
	Output json.RawMessage // deterministic JSON summary of the result
	Files  []task.File     // optional binary outputs, stored beside the JSON as <id>.<suffix>
}

// Size is the bytes of the result's JSON and files.
func (r Result) Size() int64 {
	n := int64(len(r.Output))
	for _, f := range r.Files {
		n += int64(len(f.Data))
	}
	return n
}

// Spec describes a type: its name, its payload schema and its default time limit.
type Spec struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Fields      []Field         `json:"fields"`  // payload schema; Registry specs include the common fields
	Example     json.RawMessage `json:"example"` // a valid payload
	TimeLimit   time.Duration   `json:"-"`       // default limit for one attempt
	TimeLimitMs int64           `json:"time_limit_ms"`
}

// Field types.
const (
	TypeInteger = "integer"
	TypeNumber  = "number"
	TypeString  = "string"
	TypeBoolean = "boolean"
	TypeObject  = "object"
)

// Field describes one payload field. The schema is also what validates payloads, so the
// description a client reads and the checks a payload meets cannot drift apart.
type Field struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"` // TypeInteger, TypeNumber, TypeString, TypeBoolean or TypeObject
	Description string   `json:"description"`
	Required    bool     `json:"required"`
	Min         *float64 `json:"min,omitempty"`       // integer and number
	Max         *float64 `json:"max,omitempty"`       // integer and number
	Enum        []string `json:"enum,omitempty"`      // string
	MaxBytes    int      `json:"max_bytes,omitempty"` // string: longest value in UTF-8 bytes
	Fields      []Field  `json:"fields,omitempty"`    // object: its fields
	Default     any      `json:"default,omitempty"`   // value used when the field is absent
}

// Options are the common payload fields, valid for every type.
type Options struct {
	// ForceFailure makes the worker fail the first ForceFailure attempts on purpose.
	ForceFailure int
	// TimeLimit of one attempt: the payload's timeLimitMs, or the type's TimeLimit.
	TimeLimit time.Duration
}
