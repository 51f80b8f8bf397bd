package catalog

import (
	"bytes"
	"context"
	"encoding/json"
)

type noopType struct{}

// Noop does nothing, as cheaply as possible: for benchmarks of the system around it.
func Noop() Type { return noopType{} }

func (noopType) Spec() Spec {
	return Spec{
		Name:        NameNoop,
		Description: "Does nothing and returns {}. For benchmarks.",
		Fields:      []Field{},
		Example:     json.RawMessage(`{}`),
		TimeLimit:   NoopTimeLimit,
	}
}

func (noopType) Prepare(payload json.RawMessage) (Job, error) {
	switch string(bytes.TrimSpace(payload)) {
	case "", "null", "{}":
		return noopJob{}, nil
	}
	var p problems
	decodeObject("", payload, nil, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return noopJob{}, nil
}

type noopJob struct{}

func (noopJob) Run(ctx context.Context, progress ProgressFunc) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if progress != nil {
		progress(1)
	}
	return Result{Output: json.RawMessage(`{}`)}, nil
}
