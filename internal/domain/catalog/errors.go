package catalog

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Use errors.Is: the concrete errors are *UnknownTypeError and *ValidationError.
var (
	ErrUnknownType    = errors.New("unknown task type")
	ErrInvalidPayload = errors.New("invalid payload")
)

// UnknownTypeError reports a type name that is not in the registry.
type UnknownTypeError struct {
	Name  string
	Known []string // sorted
}

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("unknown task type %q; known types are: %s", clip(e.Name, maxNameInMessage), strings.Join(e.Known, ", "))
}

// Is makes errors.Is(err, ErrUnknownType) true.
func (e *UnknownTypeError) Is(target error) bool { return target == ErrUnknownType }

// Problem is one thing wrong with a payload.
type Problem struct {
	Field   string `json:"field"`   // dotted path such as "generate.size"; "" for the payload itself
	Message string `json:"message"` // what is wrong and what is allowed
}

func (p Problem) String() string {
	if p.Field == "" {
		return "payload " + p.Message
	}
	return p.Field + " " + p.Message
}

// ValidationError lists every problem found in a payload.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "invalid payload: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidPayload) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidPayload }

// problems collects Problems, keeping at most MaxProblems and counting the rest.
type problems struct {
	list    []Problem
	dropped int
}

func (p *problems) add(field, format string, args ...any) {
	if len(p.list) >= MaxProblems {
		p.dropped++
		return
	}
	p.list = append(p.list, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

// merge adds the problems of a type's *ValidationError, or reports any other error
// as a problem of the payload.
func (p *problems) merge(err error) {
	var verr *ValidationError
	if !errors.As(err, &verr) {
		p.add("", "is invalid: %v", err)
		return
	}
	for _, q := range verr.Problems {
		p.add(q.Field, "%s", q.Message)
	}
}

func (p *problems) empty() bool { return len(p.list) == 0 }

// err returns nil or a *ValidationError.
func (p *problems) err() error {
	if p.empty() {
		return nil
	}
	list := p.list
	if p.dropped > 0 {
		list = append(list, Problem{Message: fmt.Sprintf("has %d more problems not listed", p.dropped)})
	}
	return &ValidationError{Problems: list}
}
