package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/taskgrid/taskgrid/internal/adapters/resultstore"
	"github.com/taskgrid/taskgrid/internal/domain/catalog"
)

// MaxIdempotencyKeyLen is the longest Idempotency-Key header accepted, in bytes.
const MaxIdempotencyKeyLen = 200

// submitRequest is a validated POST /api/v1/tasks request.
type submitRequest struct {
	Task           string
	Payload        json.RawMessage // a compact JSON object the catalog accepts for Task
	Directory      string          // valid by resultstore.ValidateDirectory
	IdempotencyKey string          // "" when the header is absent
}

// submitBody is the JSON body of POST /api/v1/tasks. Pointers tell a missing field from
// an empty one.
type submitBody struct {
	Task      *string         `json:"task"`
	Payload   json.RawMessage `json:"payload"`
	Directory *string         `json:"directory"`
}

// submitFields are submitBody's JSON fields, for messages.
var submitFields = []string{"task", "payload", "directory"}

// decodeSubmit reads and validates a submit request: content type, idempotency key, a
// body of at most maxBytes holding exactly one JSON object with known fields of the right
// types, a known task type, a valid result directory and a payload the catalog accepts.
// Every refusal is a *RequestError whose message says what is allowed.
func decodeSubmit(r *http.Request, maxBytes int64, reg *catalog.Registry) (submitRequest, error) {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return submitRequest{}, err
	}
	key, err := idempotencyKey(r.Header)
	if err != nil {
		return submitRequest{}, err
	}
	body, err := decodeBody(http.MaxBytesReader(nil, r.Body, maxBytes))
	if err != nil {
		return submitRequest{}, err
	}
	req, err := validateBody(body, reg)
	if err != nil {
		return submitRequest{}, err
	}
	req.IdempotencyKey = key
	return req, nil
}

// checkContentType accepts application/json and application/*+json, with parameters.
func checkContentType(value string) error {
	mediaType, _, err := mime.ParseMediaType(value)
	if err == nil && (mediaType == "application/json" ||
		strings.HasPrefix(mediaType, "application/") && strings.HasSuffix(mediaType, "+json")) {
		return nil
	}
	got := "no Content-Type"
	if value != "" {
		got = fmt.Sprintf("Content-Type %.100q", value)
	}
	return requestError(errUnsupportedMediaType,
		fmt.Sprintf("request has %s; send the body as JSON with Content-Type: application/json", got), nil)
}

// idempotencyKey returns the Idempotency-Key header, "" when absent.
func idempotencyKey(h http.Header) (string, error) {
	values, ok := h["Idempotency-Key"]
	if !ok {
		return "", nil
	}
	const allowed = "the Idempotency-Key header must be one value of 1-200 printable ASCII characters (0x20-0x7E)"
	if len(values) != 1 {
		return "", requestError(errInvalidIdempotencyKey, fmt.Sprintf("%d Idempotency-Key headers sent; %s", len(values), allowed), nil)
	}
	key := values[0]
	switch {
	case key == "":
		return "", requestError(errInvalidIdempotencyKey, "Idempotency-Key header is empty; "+allowed, nil)
	case len(key) > MaxIdempotencyKeyLen:
		return "", requestError(errInvalidIdempotencyKey, fmt.Sprintf("Idempotency-Key header is %d bytes long; %s", len(key), allowed), nil)
	}
	for i := range len(key) {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return "", requestError(errInvalidIdempotencyKey,
				fmt.Sprintf("Idempotency-Key header has byte 0x%02x at offset %d; %s", c, i, allowed), nil)
		}
	}
	return key, nil
}

// decodeBody decodes exactly one JSON object with submitBody's fields from body.
func decodeBody(body io.Reader) (submitBody, error) {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	var b submitBody
	if err := dec.Decode(&b); err != nil {
		return b, decodeError(err, dec.InputOffset())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return b, decodeError(err, dec.InputOffset())
		}
		offset := dec.InputOffset()
		return b, requestError(fmt.Errorf("%w: data after the JSON object at byte offset %d", errInvalidJSON, offset),
			fmt.Sprintf("request body has data after the JSON object, at byte offset %d; send exactly one JSON object", offset),
			map[string]any{"offset": offset})
	}
	return b, nil
}

// exampleBody shows the expected shape in messages.
const exampleBody = `{"task": "<type>", "payload": {...}, "directory": "<name>"}`

// decodeError turns an error of json.Decoder.Decode into a *RequestError. Errors
// reading the body that are none of these are returned wrapped (internal errors).
func decodeError(err error, offset int64) error {
	var (
		tooLarge  *http.MaxBytesError
		syntax    *json.SyntaxError
		wrongType *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge):
		return requestError(fmt.Errorf("%w: %w", errBodyTooLarge, err),
			fmt.Sprintf("request body is larger than the limit of %s; send at most %d bytes", formatBytes(tooLarge.Limit), tooLarge.Limit),
			map[string]any{"limit_bytes": tooLarge.Limit})
	case errors.As(err, &syntax):
		return requestError(fmt.Errorf("%w: %w", errInvalidJSON, err),
			fmt.Sprintf("request body is not valid JSON at byte offset %d: %s; send one JSON object like %s",
				syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "), exampleBody),
			map[string]any{"offset": syntax.Offset})
	case errors.Is(err, io.EOF):
		return requestError(fmt.Errorf("%w: empty body", errInvalidJSON),
			"request body is empty; send one JSON object like "+exampleBody, nil)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return requestError(fmt.Errorf("%w: %w", errInvalidJSON, err),
			fmt.Sprintf("request body ends inside a JSON value, at byte offset %d; send one complete JSON object like %s", offset, exampleBody),
			map[string]any{"offset": offset})
	case errors.As(err, &wrongType):
		return wrongTypeError(wrongType)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok { // encoding/json has no type for it
		if unquoted, uerr := strconv.Unquote(name); uerr == nil {
			name = unquoted
		}
		return requestError(fmt.Errorf("%w: %w", errUnknownField, err),
			fmt.Sprintf("request body has unknown field %.100q; allowed fields: %s", name, strings.Join(submitFields, ", ")),
			map[string]any{"field": name, "allowed_fields": submitFields})
	}
	return fmt.Errorf("read request body: %w", err)
}

// wrongTypeError reports a JSON value of the wrong type.
func wrongTypeError(e *json.UnmarshalTypeError) error {
	if e.Field == "" {
		return requestError(fmt.Errorf("%w: %w", errInvalidFieldType, e),
			fmt.Sprintf("request body is a JSON %s; send one JSON object like %s", e.Value, exampleBody),
			map[string]any{"offset": e.Offset})
	}
	return requestError(fmt.Errorf("%w: %w", errInvalidFieldType, e),
		fmt.Sprintf("field %q must be a JSON string, not %s", e.Field, e.Value),
		map[string]any{"field": e.Field, "offset": e.Offset})
}

// validateBody checks the fields' values.
func validateBody(b submitBody, reg *catalog.Registry) (submitRequest, error) {
	if b.Task == nil || *b.Task == "" {
		return submitRequest{}, requestError(fmt.Errorf("%w: task", errMissingField),
			fmt.Sprintf(`field "task" is required: the task type, one of: %s`, strings.Join(reg.Names(), ", ")),
			map[string]any{"field": "task", "known_types": reg.Names()})
	}
	if b.Directory == nil {
		var reason string
		if de := (*resultstore.DirectoryError)(nil); errors.As(resultstore.ValidateDirectory(""), &de) {
			reason = de.Reason
		}
		return submitRequest{}, requestError(fmt.Errorf("%w: directory", errMissingField),
			`field "directory" is required: the result directory below the results root; it `+reason,
			map[string]any{"field": "directory"})
	}
	payload, err := payloadObject(b.Payload)
	if err != nil {
		return submitRequest{}, err
	}
	if err := resultstore.ValidateDirectory(*b.Directory); err != nil {
		return submitRequest{}, requestError(err, err.Error(), map[string]any{"field": "directory"})
	}
	if _, _, err := reg.Prepare(*b.Task, payload); err != nil {
		return submitRequest{}, prepareError(*b.Task, err, reg)
	}
	return submitRequest{Task: *b.Task, Payload: payload, Directory: *b.Directory}, nil
}

// payloadObject returns the payload compacted; a missing or null payload is {}.
func payloadObject(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage("{}"), nil
	}
	if raw[0] != '{' {
		return nil, requestError(fmt.Errorf("%w: payload", errInvalidFieldType),
			fmt.Sprintf(`field "payload" must be a JSON object holding the task's parameters, not %s; GET /api/v1/task-types shows each type's fields and an example`, jsonKind(raw[0])),
			map[string]any{"field": "payload"})
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil { // the decoder has checked it already
		return nil, requestError(fmt.Errorf("%w: payload: %w", errInvalidJSON, err), `field "payload" is not valid JSON`, nil)
	}
	return buf.Bytes(), nil
}

// jsonKind names the kind of JSON value that starts with c.
func jsonKind(c byte) string {
	switch {
	case c == '"':
		return "a string"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// problem is one reason a payload was refused, as the client sees it.
type problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// prepareError turns an error of catalog.Registry.Prepare into a *RequestError.
func prepareError(name string, err error, reg *catalog.Registry) error {
	var invalid *catalog.ValidationError
	switch {
	case errors.Is(err, catalog.ErrUnknownType):
		known := reg.Names()
		return requestError(err,
			fmt.Sprintf("unknown task type %.100q; known types: %s", name, strings.Join(known, ", ")),
			map[string]any{"known_types": known})
	case errors.As(err, &invalid):
		problems := make([]problem, 0, len(invalid.Problems))
		texts := make([]string, 0, len(invalid.Problems))
		for _, p := range invalid.Problems {
			problems = append(problems, problem{Field: p.Field, Message: p.Message})
			texts = append(texts, p.Field+": "+p.Message)
		}
		if len(texts) == 0 {
			texts = append(texts, invalid.Error())
		}
		return requestError(err,
			fmt.Sprintf("payload is not valid for task type %q: %s", name, strings.Join(texts, "; ")),
			problems)
	case errors.Is(err, catalog.ErrInvalidPayload):
		return requestError(err, fmt.Sprintf("payload is not valid for task type %q: %v", name, err), nil)
	}
	return fmt.Errorf("prepare task %q: %w", name, err)
}

// formatBytes writes n in the largest binary unit that divides it.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
