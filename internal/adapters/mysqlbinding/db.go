// Package mysqlbinding runs SQL through the Dapr MySQL output binding (bindings.mysql).
package mysqlbinding

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	dapr "github.com/dapr/go-sdk/client"
)

// Binder is the part of the Dapr client that invokes output bindings.
type Binder interface {
	InvokeBinding(ctx context.Context, in *dapr.InvokeBindingRequest) (*dapr.BindingEvent, error)
}

// DB runs parameterised SQL through the Dapr MySQL output binding (bindings.mysql): the
// app holds no database connection of its own.
type DB struct {
	Binder  Binder
	Binding string // component name
}

// Exec runs one statement with ? placeholders bound to params.
func (d DB) Exec(ctx context.Context, sql string, params ...any) error {
	_, err := d.invoke(ctx, "exec", sql, params)
	return err
}

// Query runs one query and decodes its rows (a JSON array of objects keyed by column)
// into out.
func (d DB) Query(ctx context.Context, out any, sql string, params ...any) error {
	data, err := d.invoke(ctx, "query", sql, params)
	if err != nil {
		return err
	}
	if len(data) == 0 || string(data) == "null" {
		data = []byte("[]")
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode rows of %q: %w", short(sql), err)
	}
	return nil
}

func (d DB) invoke(ctx context.Context, op, sql string, params []any) ([]byte, error) {
	// Binding metadata travels as gRPC header values, which cannot hold line breaks.
	meta := map[string]string{"sql": strings.Join(strings.Fields(sql), " ")}
	if len(params) > 0 {
		p, err := json.Marshal(params)
		if err != nil {
			return nil, fmt.Errorf("encode params of %q: %w", short(sql), err)
		}
		meta["params"] = string(p)
	}
	ev, err := d.Binder.InvokeBinding(ctx, &dapr.InvokeBindingRequest{Name: d.Binding, Operation: op, Metadata: meta})
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", op, short(sql), err)
	}
	if ev == nil {
		return nil, nil
	}
	return ev.Data, nil
}

func short(sql string) string {
	if len(sql) > 60 {
		return sql[:60] + "..."
	}
	return sql
}

// Int decodes an integer column however the binding renders it: computed columns
// (COUNT, COALESCE, MAX) come back as JSON numbers or as decimal strings.
type Int int64

// UnmarshalJSON accepts 42, "42" and null (0).
func (n *Int) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" || s == "" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("integer column: %w", err)
	}
	*n = Int(v)
	return nil
}
