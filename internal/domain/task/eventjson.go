package task

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// decodeEventFast decodes an event written the way encoding/json writes an Event (the
// apps' own encoding), in one pass and with a few allocations, where encoding/json scans
// the input twice and reflects on every field: every consumer decodes every event (the
// gateways' feed, analytics), and that decoding was a seventh of the gateway app's CPU in
// a burst. ok is false for anything it does not take on exactly as encoding/json would:
// a key other than Event's own names (encoding/json matches them regardless of case), an
// escape sequence or invalid UTF-8 in a string, a null, a number that is not a plain one,
// bytes after the object. The caller then decodes with encoding/json, which gives the
// same result or the error. So this is a shortcut for the common form, never a second
// definition of the format.
func decodeEventFast(data []byte) (e Event, ok bool) {
	d := fastDecoder{data: data}
	if !d.object(func(key []byte) bool { return d.eventField(&e, key) }) {
		return Event{}, false
	}
	d.space()
	return e, d.pos == len(d.data)
}

type fastDecoder struct {
	data []byte
	pos  int
}

func (d *fastDecoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// consume skips white space and then c, reporting whether c was there.
func (d *fastDecoder) consume(c byte) bool {
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

// object reads an object, calling field for each key with the decoder at its value.
func (d *fastDecoder) object(field func(key []byte) bool) bool {
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	for {
		key, ok := d.str()
		if !ok || !d.consume(':') || !field(key) {
			return false
		}
		if d.consume('}') {
			return true
		}
		if !d.consume(',') {
			return false
		}
	}
}

// str reads a string without escapes, of valid UTF-8 and no control characters, and
// returns its bytes (a slice of the input).
func (d *fastDecoder) str() ([]byte, bool) {
	if !d.consume('"') {
		return nil, false
	}
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			d.pos++
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		d.pos++
	}
	return nil, false
}

func (d *fastDecoder) text() (string, bool) {
	s, ok := d.str()
	return string(s), ok
}

// number reads a JSON number and returns its bytes; integer accepts only an integer
// (no fraction or exponent), as encoding/json requires of an int field.
func (d *fastDecoder) number(integer bool) ([]byte, bool) {
	d.space()
	start := d.pos
	digits := func() int {
		n := 0
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.pos < len(d.data) && d.data[d.pos] == '-' {
		d.pos++
	}
	first := d.pos
	if n := digits(); n == 0 || (n > 1 && d.data[first] == '0') {
		return nil, false
	}
	if !integer && d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if digits() == 0 {
			return nil, false
		}
	}
	if !integer && d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	return d.data[start:d.pos], true
}

func (d *fastDecoder) integer(bits int) (int64, bool) {
	b, ok := d.number(true)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, bits)
	return v, err == nil
}

func (d *fastDecoder) time() (time.Time, bool) {
	s, ok := d.str()
	if !ok {
		return time.Time{}, false
	}
	var t time.Time
	return t, t.UnmarshalText(s) == nil
}

// eventField reads the value of key into e.
func (d *fastDecoder) eventField(e *Event, key []byte) bool {
	var ok bool
	switch string(key) {
	case "id":
		e.ID, ok = d.text()
	case "version":
		var v int64
		v, ok = d.integer(strconv.IntSize)
		e.Version = int(v)
	case "kind":
		e.Kind, ok = d.text()
	case "time":
		e.Time, ok = d.time()
	case "task_id":
		var s []byte
		if s, ok = d.str(); ok {
			ok = e.TaskID.UnmarshalText(s) == nil
		}
	case "task":
		e.Type, ok = d.text()
	case "attempt":
		var v int64
		v, ok = d.integer(strconv.IntSize)
		e.Attempt = int(v)
	case "priority":
		var s string
		s, ok = d.text()
		e.Priority = Priority(s)
	case "worker":
		e.Worker, ok = d.text()
	case "progress":
		var b []byte
		if b, ok = d.number(false); ok {
			var err error
			e.Progress, err = strconv.ParseFloat(string(b), 64)
			ok = err == nil
		}
	case "error":
		e.Error, ok = d.text()
	case "result":
		var l Location
		if e.Result != nil { // a repeated key: encoding/json decodes into what is there
			l = *e.Result
		}
		ok = d.object(func(key []byte) bool { return d.locationField(&l, key) })
		e.Result = &l
	case "started_at":
		var t time.Time
		t, ok = d.time()
		e.StartedAt = &t
	}
	return ok
}

// locationField reads the value of key into l.
func (d *fastDecoder) locationField(l *Location, key []byte) bool {
	var ok bool
	switch string(key) {
	case "directory":
		l.Directory, ok = d.text()
	case "path":
		l.Path, ok = d.text()
	case "files":
		l.Files, ok = d.strings()
	case "bytes":
		l.Bytes, ok = d.integer(64)
	case "sha256":
		l.SHA256, ok = d.text()
	}
	return ok
}

// strings reads an array of strings (not null: encoding/json writes an empty Files as
// nothing, omitempty).
func (d *fastDecoder) strings() ([]string, bool) {
	if !d.consume('[') {
		return nil, false
	}
	out := []string{}
	if d.consume(']') {
		return out, true
	}
	for {
		s, ok := d.text()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if d.consume(']') {
			return out, true
		}
		if !d.consume(',') {
			return nil, false
		}
	}
}
