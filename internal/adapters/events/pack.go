package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	var syntax *json.SyntaxError
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
		if line[0] == '[' {
			var arr []json.RawMessage
			if err := json.Unmarshal(line, &arr); err != nil {
				return nil, nil, false
			}
			for _, el := range arr {
				evs, bad = addEvent(evs, bad, el)
			}
			continue
		}
		e, err := Decode(line)
		if errors.As(err, &syntax) {
			return nil, nil, false
		}
		if err != nil {
			bad = append(bad, err)
			continue
		}
		evs = append(evs, e)
	}
	if len(evs) == 0 && len(bad) == 0 {
		bad = append(bad, errors.New("no events"))
	}
	return evs, bad, true
}

// decodeStream reads data as JSON values one after the other, however they are laid out.
func decodeStream(data []byte) (evs []Event, bad []error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				if len(evs) == 0 && len(bad) == 0 {
					bad = append(bad, errors.New("no events"))
				}
				return evs, bad
			}
			return evs, append(bad, fmt.Errorf("decode pack: %w", err))
		}
		if len(raw) > 0 && raw[0] == '[' {
			var arr []json.RawMessage
			if err := json.Unmarshal(raw, &arr); err != nil {
				bad = append(bad, fmt.Errorf("decode pack: %w", err))
				continue
			}
			for _, el := range arr {
				evs, bad = addEvent(evs, bad, el)
			}
			continue
		}
		evs, bad = addEvent(evs, bad, raw)
	}
}

func addEvent(evs []Event, bad []error, raw []byte) ([]Event, []error) {
	e, err := Decode(raw)
	if err != nil {
		return evs, append(bad, err)
	}
	return append(evs, e), bad
}
