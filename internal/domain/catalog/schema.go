package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Lengths of user-supplied text quoted back in messages.
const (
	maxNameInMessage  = 64
	maxValueInMessage = 40
)

// maxExactInteger is the largest integer a float64 holds exactly: integers written
// with a fraction or exponent (1e3) are accepted up to it.
const maxExactInteger = 1 << 53

// values holds a payload object checked against a schema: the valid values (int64,
// float64, string, bool or *values for nested objects) and the defaults of absent fields.
type values struct {
	sent map[string]bool
	vals map[string]any
}

// decodeObject checks raw against fields, adding problems under path (a dotted prefix,
// "" at the top). It never fails: invalid or missing fields are simply absent from the
// result, so callers check the problems before using it.
func decodeObject(path string, raw json.RawMessage, fields []Field, p *problems) *values {
	v := &values{sent: map[string]bool{}, vals: map[string]any{}}
	obj, order, err := parseObject(raw)
	if err != nil {
		p.add(path, "%s", err)
		return v
	}
	for _, name := range order {
		if fieldIndex(fields, name) < 0 {
			p.add(join(path, name), "is not an allowed field; allowed fields are: %s", fieldNames(fields))
		}
	}
	for _, f := range fields {
		val, ok := obj[f.Name]
		if !ok {
			switch {
			case f.Required:
				p.add(join(path, f.Name), "is required: %s", describe(f))
			case f.Default != nil:
				v.vals[f.Name] = f.Default
			}
			continue
		}
		v.sent[f.Name] = true
		if x, ok := decodeValue(join(path, f.Name), val, f, p); ok {
			v.vals[f.Name] = x
		}
	}
	return v
}

// decodeValue checks one field's value, adding a problem when it is not valid.
func decodeValue(path string, raw json.RawMessage, f Field, p *problems) (any, bool) {
	raw = bytes.TrimSpace(raw)
	switch f.Type {
	case TypeInteger:
		n, ok := parseInteger(raw)
		if !ok || !inRange(float64(n), f) {
			p.add(path, "%s, got %s", describe(f), got(raw))
			return nil, false
		}
		return n, true
	case TypeNumber:
		x, ok := parseNumber(raw)
		if !ok || !inRange(x, f) {
			p.add(path, "%s, got %s", describe(f), got(raw))
			return nil, false
		}
		return x, true
	case TypeBoolean:
		switch string(raw) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
		p.add(path, "%s, got %s", describe(f), got(raw))
		return nil, false
	case TypeString:
		return decodeString(path, raw, f, p)
	case TypeObject:
		if kind(raw) != "an object" {
			p.add(path, "%s, got %s", describe(f), got(raw))
			return nil, false
		}
		before := len(p.list) + p.dropped
		sub := decodeObject(path, raw, f.Fields, p)
		return sub, len(p.list)+p.dropped == before
	}
	p.add(path, "has a schema of unknown type %q", f.Type)
	return nil, false
}

func decodeString(path string, raw json.RawMessage, f Field, p *problems) (any, bool) {
	var s string
	if kind(raw) != "a string" || json.Unmarshal(raw, &s) != nil {
		p.add(path, "%s, got %s", describe(f), got(raw))
		return nil, false
	}
	if f.MaxBytes > 0 && len(s) > f.MaxBytes {
		p.add(path, "%s, got %d bytes", describe(f), len(s))
		return nil, false
	}
	if len(f.Enum) > 0 && !slices.Contains(f.Enum, s) {
		p.add(path, "%s, got %s", describe(f), got(raw))
		return nil, false
	}
	return s, true
}

// describe says what a field allows, as a predicate: "must be an integer between 2 and 10".
func describe(f Field) string {
	switch f.Type {
	case TypeInteger:
		return "must be an integer" + rangeText(f)
	case TypeNumber:
		return "must be a number" + rangeText(f)
	case TypeBoolean:
		return "must be true or false"
	case TypeString:
		if len(f.Enum) > 0 {
			quoted := make([]string, len(f.Enum))
			for i, e := range f.Enum {
				quoted[i] = strconv.Quote(e)
			}
			return "must be one of " + strings.Join(quoted, ", ")
		}
		if f.MaxBytes > 0 {
			return fmt.Sprintf("must be a string of at most %d bytes", f.MaxBytes)
		}
		return "must be a string"
	case TypeObject:
		return "must be an object with fields " + fieldNames(f.Fields)
	}
	return "must be a " + f.Type
}

func rangeText(f Field) string {
	switch {
	case f.Min != nil && f.Max != nil:
		return fmt.Sprintf(" between %s and %s", formatNumber(*f.Min), formatNumber(*f.Max))
	case f.Min != nil:
		return " of at least " + formatNumber(*f.Min)
	case f.Max != nil:
		return " of at most " + formatNumber(*f.Max)
	}
	return ""
}

func inRange(x float64, f Field) bool {
	return (f.Min == nil || x >= *f.Min) && (f.Max == nil || x <= *f.Max)
}

func formatNumber(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// parseInteger reads a JSON number that is a whole number fitting an int64.
func parseInteger(raw []byte) (int64, bool) {
	if kind(raw) != "a number" {
		return 0, false
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return n, true
	}
	x, ok := parseNumber(raw)
	if !ok || x != math.Trunc(x) || math.Abs(x) > maxExactInteger {
		return 0, false
	}
	return int64(x), true
}

func parseNumber(raw []byte) (float64, bool) {
	if kind(raw) != "a number" || !json.Valid(raw) {
		return 0, false
	}
	x, err := strconv.ParseFloat(string(raw), 64)
	return x, err == nil && !math.IsInf(x, 0)
}

// kind names the JSON type of a value, for messages.
func kind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// got describes a value for a message: numbers and short strings are quoted back.
func got(raw []byte) string {
	switch k := kind(raw); k {
	case "a number", "a boolean", "null":
		return clip(string(raw), maxValueInMessage)
	case "a string":
		if len(raw) <= maxValueInMessage {
			return string(raw)
		}
		return k
	default:
		return k
	}
}

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func join(path, name string) string {
	name = clip(name, maxNameInMessage)
	if path == "" {
		return name
	}
	return path + "." + name
}

func fieldIndex(fields []Field, name string) int {
	return slices.IndexFunc(fields, func(f Field) bool { return f.Name == name })
}

func fieldNames(fields []Field) string {
	if len(fields) == 0 {
		return "(none)"
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// parseObject splits a JSON object into its members, in the order given. An empty or
// null payload is the empty object. Duplicate keys are an error: which value would win
// is not something a client should have to guess.
func parseObject(raw json.RawMessage) (map[string]json.RawMessage, []string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return map[string]json.RawMessage{}, nil, nil
	}
	if !json.Valid(raw) {
		var syn *json.SyntaxError
		if err := json.Unmarshal(raw, new(any)); errors.As(err, &syn) {
			return nil, nil, fmt.Errorf("is not valid JSON: %s at byte %d", syn, syn.Offset)
		}
		return nil, nil, errors.New("is not valid JSON")
	}
	if k := kind(raw); k != "an object" {
		return nil, nil, fmt.Errorf("must be a JSON object, got %s", k)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, nil, fmt.Errorf("is not valid JSON: %w", err)
	}
	obj := map[string]json.RawMessage{}
	var order []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("is not valid JSON: %w", err)
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, nil, fmt.Errorf("is not valid JSON: %w", err)
		}
		if _, dup := obj[key]; dup {
			return nil, nil, fmt.Errorf("has the field %q more than once", clip(key, maxNameInMessage))
		}
		obj[key] = val
		order = append(order, key)
	}
	if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) { // '}'
		return nil, nil, fmt.Errorf("is not valid JSON: %w", err)
	}
	return obj, order, nil
}

func (v *values) sentField(name string) bool { return v.sent[name] }

// has reports whether the field holds a valid value, sent or default.
func (v *values) has(name string) bool {
	_, ok := v.vals[name]
	return ok
}

func (v *values) int(name string) int64 {
	switch x := v.vals[name].(type) {
	case int64:
		return x
	case int:
		return int64(x)
	case float64:
		return int64(x)
	}
	return 0
}

func (v *values) number(name string) float64 {
	switch x := v.vals[name].(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case int:
		return float64(x)
	}
	return 0
}

func (v *values) str(name string) string {
	s, _ := v.vals[name].(string)
	return s
}

func (v *values) bool(name string) bool {
	b, _ := v.vals[name].(bool)
	return b
}

// object returns a nested object, or an empty one when it is absent or invalid.
func (v *values) object(name string) *values {
	if o, ok := v.vals[name].(*values); ok {
		return o
	}
	return &values{sent: map[string]bool{}, vals: map[string]any{}}
}

// bound makes a schema bound.
func bound(x float64) *float64 { return &x }
