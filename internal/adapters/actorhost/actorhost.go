// Package actorhost hosts Dapr actors over the app-side actor HTTP protocol on a chi
// router, and calls actors through the sidecar with JSON payloads.
//
// The Go SDK's actor runtime is a process-wide singleton that drops errors of error-only
// methods, gives reminders no context and cannot cancel a reminder from its callback.
// This adapter is small and keeps those under our control: every call has the request's
// context, errors reach the caller as "error from actor service: (500) <message>", and a
// reminder callback receives the reminder's data and may answer "cancel" (the
// X-Daprremindercancel header). daprd 1.18 does not delete a periodic reminder for that
// answer (the scheduler keeps the job), so a handler that is done with a reminder must
// also unregister it. daprd still provides the turn-based concurrency: it sends one call
// at a time per actor id.
package actorhost

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/go-chi/chi/v5"
)

// Defaults of Config.
const (
	IdleTimeoutDefault  = time.Hour
	DrainTimeoutDefault = 30 * time.Second
)

// ErrMethodNotFound is returned by a Handler for an unknown method (answered 404, which
// daprd does not retry).
var ErrMethodNotFound = errors.New("actor method not found")

// Handler implements one actor type. Calls for one actor id never overlap.
type Handler interface {
	// Invoke runs method on actor id with the request body and returns the reply body.
	Invoke(ctx context.Context, id, method string, body []byte) ([]byte, error)
	// Remind runs when reminder fires on actor id with the data it was registered with;
	// cancel=true answers "cancel" (see the package doc: not enough to delete it).
	Remind(ctx context.Context, id, reminder string, data []byte) (cancel bool, err error)
	// Deactivate tells the handler that actor id left this process (idle or rebalanced).
	Deactivate(ctx context.Context, id string)
}

// Config of a Host. Zero values mean the defaults.
type Config struct {
	// IdleTimeout deactivates an actor after this long without calls. Defaults to IdleTimeoutDefault.
	IdleTimeout time.Duration
	// DrainTimeout bounds how long daprd waits for ongoing calls when actors move.
	// Defaults to DrainTimeoutDefault.
	DrainTimeout time.Duration
}

// Host serves the actor types registered on it.
type Host struct {
	logger *slog.Logger
	cfg    Config
	types  map[string]Handler
}

// New returns a Host without actor types.
func New(logger *slog.Logger, cfg *Config) *Host {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	c.IdleTimeout = cmp.Or(c.IdleTimeout, IdleTimeoutDefault)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, DrainTimeoutDefault)
	return &Host{logger: logger.With("component", "actorhost"), cfg: c, types: map[string]Handler{}}
}

// Register adds an actor type. Registering a type twice is a programming error.
func (h *Host) Register(actorType string, handler Handler) {
	if _, dup := h.types[actorType]; dup {
		panic(fmt.Sprintf("actorhost: actor type %q registered twice", actorType))
	}
	h.types[actorType] = handler
}

// Mount adds the actor protocol routes to r. Call it after every Register.
func (h *Host) Mount(r chi.Router) {
	r.Get("/dapr/config", h.serveConfig)
	r.Put("/actors/{type}/{id}/method/remind/{name}", h.serveRemind)
	r.Put("/actors/{type}/{id}/method/timer/{name}", h.serveTimer)
	r.Put("/actors/{type}/{id}/method/{method}", h.serveInvoke)
	r.Delete("/actors/{type}/{id}", h.serveDeactivate)
}

func (h *Host) serveConfig(w http.ResponseWriter, r *http.Request) {
	entities := make([]string, 0, len(h.types))
	for t := range h.types {
		entities = append(entities, t)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"entities":                entities,
		"actorIdleTimeout":        h.cfg.IdleTimeout.String(),
		"drainOngoingCallTimeout": h.cfg.DrainTimeout.String(),
		"drainRebalancedActors":   true,
		"reentrancy":              map[string]any{"enabled": false},
	})
}

func (h *Host) handler(w http.ResponseWriter, r *http.Request) (Handler, string, bool) {
	hd, ok := h.types[chi.URLParam(r, "type")]
	if !ok {
		http.Error(w, "unknown actor type", http.StatusNotFound)
		return nil, "", false
	}
	return hd, chi.URLParam(r, "id"), true
}

func (h *Host) serveInvoke(w http.ResponseWriter, r *http.Request) {
	hd, id, ok := h.handler(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	method := chi.URLParam(r, "method")
	out, err := hd.Invoke(r.Context(), id, method, body)
	switch {
	case errors.Is(err, ErrMethodNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	}
}

func (h *Host) serveRemind(w http.ResponseWriter, r *http.Request) {
	hd, id, ok := h.handler(w, r)
	if !ok {
		return
	}
	name := chi.URLParam(r, "name")
	data, err := reminderData(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cancel, err := hd.Remind(r.Context(), id, name, data)
	if err != nil {
		h.logger.WarnContext(r.Context(), "reminder failed", "actor_type", chi.URLParam(r, "type"), "actor_id", id, "reminder", name, "error", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if cancel {
		w.Header().Set("X-Daprremindercancel", "true")
	}
	w.WriteHeader(http.StatusOK)
}

// reminderData returns the data of a reminder fire. daprd sends the registered bytes
// inline when they are JSON ({"data": {...}}); SDKs that register through the HTTP API
// may send them as a base64 string.
func reminderData(body io.Reader) ([]byte, error) {
	var fire struct {
		Data json.RawMessage `json:"data"`
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("read reminder: %w", err)
	}
	if len(raw) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(raw, &fire); err != nil {
		return nil, fmt.Errorf("decode reminder: %w", err)
	}
	switch {
	case len(fire.Data) == 0 || string(fire.Data) == "null":
		return nil, nil
	case fire.Data[0] == '"':
		var b []byte
		if err := json.Unmarshal(fire.Data, &b); err != nil {
			return nil, fmt.Errorf("decode reminder data: %w", err)
		}
		return b, nil
	}
	return fire.Data, nil
}

func (h *Host) serveTimer(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "timers are not used", http.StatusNotFound)
}

func (h *Host) serveDeactivate(w http.ResponseWriter, r *http.Request) {
	hd, id, ok := h.handler(w, r)
	if !ok {
		return
	}
	hd.Deactivate(r.Context(), id)
	w.WriteHeader(http.StatusOK)
}

// Invoker is the part of the Dapr client that calls actors.
type Invoker interface {
	InvokeActor(ctx context.Context, in *dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error)
}

// Call invokes method on actor actorType/id with in encoded as JSON and decodes the
// reply into out (unless out is nil).
func Call(ctx context.Context, c Invoker, actorType, id, method string, in, out any) error {
	var data []byte
	if in != nil {
		var err error
		if data, err = json.Marshal(in); err != nil {
			return fmt.Errorf("call actor %s/%s.%s: encode: %w", actorType, id, method, err)
		}
	}
	resp, err := c.InvokeActor(ctx, &dapr.InvokeActorRequest{ActorType: actorType, ActorID: id, Method: method, Data: data})
	if err != nil {
		return fmt.Errorf("call actor %s/%s.%s: %w", actorType, id, method, err)
	}
	if out == nil || resp == nil || len(resp.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp.Data, out); err != nil {
		return fmt.Errorf("call actor %s/%s.%s: decode reply: %w", actorType, id, method, err)
	}
	return nil
}

// IsActorError reports whether err came back from the actor's own code with msg in its
// message (errors cross the sidecar as text).
func IsActorError(err error, msg string) bool {
	return err != nil && strings.Contains(err.Error(), msg)
}
