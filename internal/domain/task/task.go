// Package task holds the task record and the types every app exchanges about a task:
// its status, priority, the assignment a worker receives, the result it hands to the
// storekeeper. It has no Dapr imports.
package task

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Status of a task as the user sees it.
type Status string

// Statuses. A task goes pending → running → completed or failed; a failed attempt
// puts it back to pending silently (at high priority) until attempts run out. A user
// may cancel a pending or running task: it ends cancelled.
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Terminal reports whether s is final.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Priority of a queued task: high (re-queued after a failure) before normal, FIFO
// within a priority.
type Priority string

// Priorities.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
)

// MaxAttemptsDefault is how many attempts a task gets before it fails for good.
const MaxAttemptsDefault = 5

// Record is the stored state of one task (key "task-<id>" in the state store).
type Record struct {
	ID      uuid.UUID       `json:"id"`
	Type    string          `json:"task"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// PayloadKey, when set, names the state key the payload is stored under, apart from
	// the record (a large one; see taskstore.InlinePayloadMax), and Payload is empty.
	PayloadKey  string    `json:"payload_key,omitempty"`
	Directory   string    `json:"directory"`
	Status      Status    `json:"status"`
	Priority    Priority  `json:"priority"`
	Attempts    int       `json:"attempts"`
	MaxAttempts int       `json:"max_attempts"`
	Progress    float64   `json:"progress"`
	Worker      string    `json:"worker,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// QueuedAt and DispatchedAt are when the latest attempt entered and left the queue
	// (the queue's clock); StartedAt is when it started running (the worker's clock).
	QueuedAt     *time.Time `json:"queued_at,omitempty"`
	DispatchedAt *time.Time `json:"dispatched_at,omitempty"`
	StartedAt    *time.Time `json:"started_at,omitempty"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	Result       *Location  `json:"result,omitempty"`
	Error        string     `json:"error,omitempty"`
	// Owner is the name of the API key that submitted the task, when the gateway
	// requires keys: only that key sees it.
	Owner string `json:"owner,omitempty"`
}

// Location says where a stored result is, relative to the storekeeper's results root.
type Location struct {
	Directory string   `json:"directory"`
	Path      string   `json:"path"`
	Files     []string `json:"files,omitempty"`
	Bytes     int64    `json:"bytes"`
	SHA256    string   `json:"sha256"`
}

// Assignment is what the queue hands a worker: which task, which attempt.
type Assignment struct {
	TaskID     uuid.UUID `json:"task_id"`
	Attempt    int       `json:"attempt"` // 1 for the first attempt
	Priority   Priority  `json:"priority"`
	Enqueued   time.Time `json:"enqueued_at"`            // when the queue took it (stamped by the queue)
	Dispatched time.Time `json:"dispatched_at,omitzero"` // when the queue pushed it to a slot
	// Spec, when set, is what the worker needs to run the task, so it computes at once
	// and records the start meanwhile. Set for small payloads (SpecMaxPayload); without
	// it the worker reads the task record first.
	Spec *Spec `json:"spec,omitempty"`
	// Redispatched says that a push of this very attempt failed in a way that leaves
	// open whether a node took it: the worker then checks the record before computing
	// (and drops the attempt if it started elsewhere), spec or not.
	Redispatched bool `json:"redispatched,omitempty"`
}

// RecordGrace is how long after its first attempt was queued a task's record may still
// be on its way. The gateway stores the records of a pass while it queues their first
// attempts, not before (the push to a worker does not wait for the record's write), so
// a worker or the storekeeper may look for a record that is not there yet. A record not
// found for a first attempt queued within RecordGrace is looked for again; after it, the
// task does not exist (its submission failed and was answered 503, or its gateway died
// before the write) and the attempt is dropped.
const RecordGrace = 10 * time.Second

// RecordMayLag reports whether the record of a's task may not be written yet at now
// (see RecordGrace).
func (a Assignment) RecordMayLag(now time.Time) bool {
	return a.Attempt == 1 && !a.Enqueued.IsZero() && now.Sub(a.Enqueued) < RecordGrace
}

// Spec is what running a task takes: its type, payload and result directory.
type Spec struct {
	Type        string          `json:"task"`
	Payload     json.RawMessage `json:"payload"`
	Directory   string          `json:"directory"`
	CreatedAt   time.Time       `json:"created_at"`
	MaxAttempts int             `json:"max_attempts"`
}

// SpecMaxPayload bounds the payloads carried in assignments: a queue entry stays small.
const SpecMaxPayload = 4 << 10

// SpecOf returns the spec of rec to carry in its assignments, or nil when its payload
// is too large to carry (or stored apart from the record).
func SpecOf(rec Record) *Spec {
	if rec.PayloadKey != "" || len(rec.Payload) > SpecMaxPayload {
		return nil
	}
	return &Spec{Type: rec.Type, Payload: rec.Payload, Directory: rec.Directory, CreatedAt: rec.CreatedAt, MaxAttempts: rec.MaxAttempts}
}

func (a Assignment) String() string { return a.ID().String() }

// ID names the attempt.
func (a Assignment) ID() AttemptID { return AttemptID{TaskID: a.TaskID, Attempt: a.Attempt} }

// AttemptID names one attempt of a task.
type AttemptID struct {
	TaskID  uuid.UUID `json:"task_id"`
	Attempt int       `json:"attempt"`
}

func (id AttemptID) String() string { return fmt.Sprintf("%s#%d", id.TaskID, id.Attempt) }

// StoreRequest is what a worker sends the storekeeper after a successful attempt.
type StoreRequest struct {
	TaskID    uuid.UUID       `json:"task_id"`
	Attempt   int             `json:"attempt"`
	Directory string          `json:"directory"`
	Worker    string          `json:"worker"`
	Output    json.RawMessage `json:"output"`
	Files     []File          `json:"files,omitempty"`
	StartedAt time.Time       `json:"started_at"`
	// Start, when set, is the attempt whose start was not recorded: the task was done
	// computing before it was, and the storekeeper records both at once
	// (StartAndComplete).
	Start *Assignment `json:"start,omitempty"`
}

// File is a binary output of a task, stored beside its JSON as <id>.<suffix>.
type File struct {
	Suffix string `json:"suffix"`
	Data   []byte `json:"data"` // base64 in JSON
}

// StoreBatch is what a worker node sends the storekeeper: the results of several
// successful attempts at once (POST /results). The storekeeper writes them
// concurrently and completes their tasks together.
type StoreBatch struct {
	Results []StoreRequest `json:"results"`
}

// MaxStoreBatchBytes is the largest StoreBatch the storekeeper takes, as JSON: a worker
// node sends larger batches in several calls, and fails a result that is larger alone.
const MaxStoreBatchBytes = 96 << 20

// StoreReply answers a StoreBatch with one outcome per result, in order.
type StoreReply struct {
	Outcomes []StoreOutcome `json:"outcomes"`
}

// StoreOutcome is what became of one result. Stored means the result is on disk and the
// task completed (or had completed already, or had failed for good: then the result is
// kept on disk only); the worker may forget the attempt. Rejected means the result can
// never be stored (bad directory or file name): the worker fails the attempt. Otherwise
// Error says why it was not stored this time, and the worker sends it again.
type StoreOutcome struct {
	TaskID   uuid.UUID `json:"task_id"`
	Stored   bool      `json:"stored,omitempty"`
	Rejected bool      `json:"rejected,omitempty"`
	Error    string    `json:"error,omitempty"`
	Location *Location `json:"location,omitempty"`
}
