package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Packs. A broker message carries the lifecycle events of one batch, not one event: its
// data is the events' JSON, one per line (newline-delimited JSON, content type
// PackContentType). A task's three events (accepted, started, completed) each come out
// of a batch of many tasks, so a message per event cost every process on the way (the
// publishing sidecar, the broker, each subscribing sidecar) its per-message work many
// times over: a CloudEvent envelope, its JSON, a Kafka record, a bulk-delivery entry.
// Every event still goes to Kafka, with its own id; consumers drop repeats by that id,
// and order a task's events by attempt and status, not by arrival (they come from
// three publishers anyway).
//
// The content type is not JSON on purpose: daprd parses a JSON payload into a generic
// map to build the CloudEvent and again for each subscriber's bulk delivery; it passes
// any other text through as a string.

// PackContentType is the content type of a message's data.
const PackContentType = "application/x-ndjson"

// Bounds of one pack: the broker's default record limit is 1 MB, and a subscriber's
// delivery holds up to its MaxMessages of them.
const (
	packMaxEvents = 256
	packMaxBytes  = 256 << 10
)

// splitPacks cuts the events evs[i], i in idx, into packs of at most maxEvents events
// and about packMaxBytes, in order.
func splitPacks(evs []outEvent, idx []int, maxEvents int) [][]int {
	var packs [][]int
	size := 0
	for k, i := range idx {
		if k == 0 || len(packs[len(packs)-1]) >= maxEvents || size+len(evs[i].data) > packMaxBytes {
			packs, size = append(packs, nil), 0
		}
		packs[len(packs)-1] = append(packs[len(packs)-1], i)
		size += len(evs[i].data) + 1
	}
	return packs
}

// encodePack joins the encoded events evs[i], i in pack, one per line.
func encodePack(evs []outEvent, pack []int) []byte {
	n := 0
	for _, i := range pack {
		n += len(evs[i].data) + 1
	}
	b := make([]byte, 0, n)
	for _, i := range pack {
		b = append(append(b, evs[i].data...), '\n')
	}
	return b
}

// DecodePack returns the events of a message's data: JSON values one after the other
// (a pack), each an event or an array of events. An element that is not a lifecycle
// event is left out and its error is in bad; a pack that cannot be read on is cut there
// (its error in bad too).
func DecodePack(data []byte) (evs []Event, bad []error) {
	if evs, bad, ok := decodeLines(data); ok {
		return evs, bad
	}
	return decodeStream(data)
}

// decodeLines reads a pack the way packs are written, one value per line, each decoded
// in place (a stream decoder scans every value twice more). ok is false when a line is
// not a whole JSON value (one value spread over lines): the caller reads a stream then.
func decodeLines(data []byte) (evs []Event, bad []error, ok bool) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		var err error
		if evs, bad, err = addValue(evs, bad, line); err != nil {
			return nil, nil, false
		}
	}
	return evs, noEvents(evs, bad), true
}

// decodeStream reads data as JSON values one after the other, however they are laid out.
func decodeStream(data []byte) (evs []Event, bad []error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return evs, noEvents(evs, bad)
			}
			return evs, append(bad, fmt.Errorf("decode pack: %w", err))
		}
		var err error
		if evs, bad, err = addValue(evs, bad, raw); err != nil {
			bad = append(bad, fmt.Errorf("decode pack: %w", err))
		}
	}
}

// addValue adds the events of one value of a pack: an event, or an array of events. An
// element that is not an event goes to bad; syntax is the error of a value that is not
// whole JSON (nothing is added then).
func addValue(evs []Event, bad []error, raw []byte) (_ []Event, _ []error, syntax error) {
	if len(raw) > 0 && raw[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return evs, bad, err
		}
		for _, el := range arr {
			evs, bad = addEvent(evs, bad, el)
		}
		return evs, bad, nil
	}
	e, err := Decode(raw)
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return evs, bad, err
	case err != nil:
		return evs, append(bad, err), nil
	}
	return append(evs, e), bad, nil
}

func addEvent(evs []Event, bad []error, raw []byte) ([]Event, []error) {
	e, err := Decode(raw)
	if err != nil {
		return evs, append(bad, err)
	}
	return append(evs, e), bad
}

// noEvents is bad, with an error added when a pack gave nothing at all.
func noEvents(evs []Event, bad []error) []error {
	if len(evs) == 0 && len(bad) == 0 {
		return append(bad, errors.New("no events"))
	}
	return bad
}

// packID is the CloudEvent id of a pack: its first event's id, and how many it carries.
func packID(first string, n int) string {
	if n == 1 {
		return first
	}
	return first + "+" + strconv.Itoa(n-1)
}

// packMetadata is the publish metadata of a pack of n events whose first event is first:
// its CloudEvent id (packID), and its first event's task as the Kafka message key.
func packMetadata(first Event, n int) map[string]string {
	return map[string]string{"cloudevent.id": packID(first.ID, n), "partitionKey": first.TaskID.String()}
}
