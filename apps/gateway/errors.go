package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/taskgrid/taskgrid/internal/adapters/resultstore"
	"github.com/taskgrid/taskgrid/internal/domain/catalog"
)

// Reasons a request is refused. Each is matched (errors.Is) by the errors that report
// it, and errorTable gives its status and code.
var (
	errInvalidJSON           = errors.New("invalid JSON")
	errUnknownField          = errors.New("unknown field")
	errInvalidFieldType      = errors.New("invalid field type")
	errMissingField          = errors.New("missing field")
	errBodyTooLarge          = errors.New("request body too large")
	errUnsupportedMediaType  = errors.New("unsupported media type")
	errInvalidIdempotencyKey = errors.New("invalid idempotency key")
	errInvalidID             = errors.New("invalid task id")
	errTaskNotCompleted      = errors.New("task not completed")
	errTaskFailed            = errors.New("task failed")
	errTaskCancelled         = errors.New("task cancelled")
	errTaskFinished          = errors.New("task finished")
)

// errorTable is the one place where an error becomes an HTTP status and an error code
// (like pkgsite's derrors.ToStatus). The first entry that matches (errors.Is) wins;
// errors that match none are internal errors (500). Message is what a user reads when
// the error carries no message of its own (it is not a *RequestError).
var errorTable = []struct {
	err     error
	status  int
	code    string
	message string
}{
	{errInvalidJSON, http.StatusBadRequest, "invalid_json", "request body is not valid JSON"},
	{errUnknownField, http.StatusBadRequest, "unknown_field", "request body has an unknown field"},
	{errInvalidFieldType, http.StatusBadRequest, "invalid_field_type", "a field of the request body has the wrong JSON type"},
	{errMissingField, http.StatusBadRequest, "missing_field", "a required field is missing"},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, "body_too_large", "request body is too large"},
	{errUnsupportedMediaType, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the request body as application/json"},
	{errInvalidIdempotencyKey, http.StatusBadRequest, "invalid_idempotency_key", "the Idempotency-Key header must be 1-200 printable ASCII characters"},
	{errInvalidID, http.StatusBadRequest, "invalid_id", "the task id must be a UUID"},
	{catalog.ErrUnknownType, http.StatusBadRequest, "unknown_task_type", "unknown task type; GET /api/v1/task-types lists the known types"},
	{catalog.ErrInvalidPayload, http.StatusUnprocessableEntity, "invalid_payload", "the payload is not valid for this task type"},
	{resultstore.ErrInvalidDirectory, http.StatusBadRequest, "invalid_directory", "invalid result directory"},
	{ErrNotFound, http.StatusNotFound, "not_found", "no task has this id"},
	{errTaskNotCompleted, http.StatusConflict, "task_not_completed", "the task is not completed yet"},
	{errTaskFailed, http.StatusConflict, "task_failed", "the task failed, so it has no result"},
	{errTaskCancelled, http.StatusConflict, "task_cancelled", "the task was cancelled, so it has no result"},
	{errTaskFinished, http.StatusConflict, "task_finished", "the task has finished (completed, failed or cancelled), so it cannot be cancelled"},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "the task service is temporarily unavailable; retry in a moment"},
}

// Answers for errors outside the table.
const (
	codeInternal    = "internal"
	messageInternal = "internal error; it has been logged"
	codeCanceled    = "canceled" // the client went away; nothing is written
)

// classify returns the status, code and default message of err.
func classify(err error) (status int, code, message string) {
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.status, e.code, e.message
		}
	}
	return http.StatusInternalServerError, codeInternal, messageInternal
}

// RequestError is an error whose message is meant for the client: it says what is wrong
// with the request and what is allowed instead. Status and Code come from errorTable,
// through Err.
type RequestError struct {
	Status  int
	Code    string
	Message string
	Details any   // JSON-encoded as the error's details; nil omits them
	Err     error // the cause; it matches an errorTable entry
}

// requestError returns a *RequestError for cause, which must match an errorTable entry.
func requestError(cause error, message string, details any) *RequestError {
	status, code, _ := classify(cause)
	return &RequestError{Status: status, Code: code, Message: message, Details: details, Err: cause}
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

func (e *RequestError) Unwrap() error { return e.Err }

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error errorPayload `json:"error"`
}

type errorPayload struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// writeError answers err, which a handler could not deal with, and returns its code.
// Every handler reports errors through it. A *RequestError is answered as it is; other
// errors are looked up in errorTable, and internal errors are logged and answered
// without their text.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) (code string) {
	ctx := r.Context()
	if ctx.Err() != nil && errors.Is(err, context.Cause(ctx)) {
		a.logger.DebugContext(ctx, "client went away", "method", r.Method, "path", r.URL.Path, "error", err)
		return codeCanceled
	}
	body := errorBody{}
	var status int
	var re *RequestError
	if errors.As(err, &re) {
		status, body.Error = re.Status, errorPayload{Code: re.Code, Message: re.Message, Details: re.Details}
	} else {
		status, body.Error.Code, body.Error.Message = classify(err)
	}
	switch {
	case status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		a.logger.WarnContext(ctx, "dependency unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
	case status >= 500:
		a.logger.ErrorContext(ctx, "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	default:
		a.logger.DebugContext(ctx, "request refused", "method", r.Method, "path", r.URL.Path, "code", body.Error.Code, "error", err)
	}
	writeJSON(w, status, body)
	return body.Error.Code
}
