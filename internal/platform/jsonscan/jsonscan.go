// Package jsonscan reads JSON of a known, simple form in one pass over its bytes, for
// the decoders on the hot paths (every consumer decodes every lifecycle event, and the
// envelope daprd wraps each pack in), where encoding/json scans its input twice and
// reflects on every field.
//
// A Scanner is strict on purpose: each method reports ok=false for anything outside
// the simple form (an escape sequence other than the plain ones, invalid UTF-8 in a
// string it returns, a number that is not plain JSON), and a caller that gets false
// decodes with encoding/json instead. So a fast decoder built on it is a shortcut for
// the common form, checked against encoding/json by fuzzing, never a second definition
// of the format.
package jsonscan

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Scanner reads JSON from Data, starting at Pos.
type Scanner struct {
	Data []byte
	Pos  int
}

// Space skips white space.
func (s *Scanner) Space() {
	for s.Pos < len(s.Data) {
		switch s.Data[s.Pos] {
		case ' ', '\t', '\n', '\r':
			s.Pos++
		default:
			return
		}
	}
}

// Consume skips white space and then c, reporting whether c was there.
func (s *Scanner) Consume(c byte) bool {
	s.Space()
	if s.Pos < len(s.Data) && s.Data[s.Pos] == c {
		s.Pos++
		return true
	}
	return false
}

// End reports whether only white space is left.
func (s *Scanner) End() bool {
	s.Space()
	return s.Pos == len(s.Data)
}

// Object reads an object, calling field for each key (without escapes) with the
// scanner at its value; field reads the value and reports whether it could.
func (s *Scanner) Object(field func(key []byte) bool) bool {
	if !s.Consume('{') {
		return false
	}
	if s.Consume('}') {
		return true
	}
	for {
		key, ok := s.Plain()
		if !ok || !s.Consume(':') || !field(key) {
			return false
		}
		if s.Consume('}') {
			return true
		}
		if !s.Consume(',') {
			return false
		}
	}
}

// Plain reads a string without escapes, of valid UTF-8 and without control characters,
// and returns its bytes (a slice of Data).
func (s *Scanner) Plain() ([]byte, bool) {
	if !s.Consume('"') {
		return nil, false
	}
	start := s.Pos
	for s.Pos < len(s.Data) {
		c := s.Data[s.Pos]
		switch {
		case c == '"':
			b := s.Data[start:s.Pos]
			s.Pos++
			return b, utf8.Valid(b)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		s.Pos++
	}
	return nil, false
}

// Text is Plain as a string.
func (s *Scanner) Text() (string, bool) {
	b, ok := s.Plain()
	return string(b), ok
}

// Unquote reads a string whose escapes are the two-character ones (\" \\ \/ \b \f \n
// \r \t), of valid UTF-8, and returns it unescaped (a new slice). A \u escape is left
// to encoding/json (ok=false): its surrogate pairs and replacements are its own.
func (s *Scanner) Unquote() ([]byte, bool) {
	if !s.Consume('"') {
		return nil, false
	}
	out := make([]byte, 0, 256)
	start := s.Pos
	for s.Pos < len(s.Data) {
		c := s.Data[s.Pos]
		switch {
		case c == '"':
			out = append(out, s.Data[start:s.Pos]...)
			s.Pos++
			return out, utf8.Valid(out)
		case c < 0x20:
			return nil, false
		case c == '\\':
			if s.Pos+1 >= len(s.Data) {
				return nil, false
			}
			out = append(out, s.Data[start:s.Pos]...)
			var r byte
			switch s.Data[s.Pos+1] {
			case '"', '\\', '/':
				r = s.Data[s.Pos+1]
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			default:
				return nil, false
			}
			out = append(out, r)
			s.Pos += 2
			start = s.Pos
			continue
		}
		s.Pos++
	}
	return nil, false
}

// Number reads a JSON number and returns its bytes; integer accepts only an integer
// (no fraction or exponent), as encoding/json requires of an integer field.
func (s *Scanner) Number(integer bool) ([]byte, bool) {
	s.Space()
	start := s.Pos
	digits := func() int {
		n := 0
		for s.Pos < len(s.Data) && s.Data[s.Pos] >= '0' && s.Data[s.Pos] <= '9' {
			s.Pos++
			n++
		}
		return n
	}
	if s.Pos < len(s.Data) && s.Data[s.Pos] == '-' {
		s.Pos++
	}
	first := s.Pos
	if n := digits(); n == 0 || (n > 1 && s.Data[first] == '0') {
		return nil, false
	}
	if !integer && s.Pos < len(s.Data) && s.Data[s.Pos] == '.' {
		s.Pos++
		if digits() == 0 {
			return nil, false
		}
	}
	if !integer && s.Pos < len(s.Data) && (s.Data[s.Pos] == 'e' || s.Data[s.Pos] == 'E') {
		s.Pos++
		if s.Pos < len(s.Data) && (s.Data[s.Pos] == '+' || s.Data[s.Pos] == '-') {
			s.Pos++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	return s.Data[start:s.Pos], true
}

// Int reads an integer that fits in an int.
func (s *Scanner) Int() (int, bool) {
	v, ok := s.integer(strconv.IntSize)
	return int(v), ok
}

// Int64 reads an integer that fits in an int64.
func (s *Scanner) Int64() (int64, bool) { return s.integer(64) }

func (s *Scanner) integer(bits int) (int64, bool) {
	b, ok := s.Number(true)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, bits)
	return v, err == nil
}

// Float reads a number.
func (s *Scanner) Float() (float64, bool) {
	b, ok := s.Number(false)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(b), 64)
	return v, err == nil
}

// Time reads an RFC 3339 time as encoding/json reads a time.Time.
func (s *Scanner) Time() (time.Time, bool) {
	b, ok := s.Plain()
	if !ok {
		return time.Time{}, false
	}
	var t time.Time
	return t, t.UnmarshalText(b) == nil
}

// Strings reads an array of plain strings.
func (s *Scanner) Strings() ([]string, bool) {
	if !s.Consume('[') {
		return nil, false
	}
	out := []string{}
	if s.Consume(']') {
		return out, true
	}
	for {
		v, ok := s.Text()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if s.Consume(']') {
			return out, true
		}
		if !s.Consume(',') {
			return nil, false
		}
	}
}

// maxDepth is encoding/json's bound on nesting: it refuses what is deeper.
const maxDepth = 10000

// Skip reads any JSON value whose strings have no \u escapes (a string's other bytes
// are not checked for UTF-8: skipped, encoding/json takes them too) and discards it.
func (s *Scanner) Skip() bool { return s.skip(1) }

func (s *Scanner) skip(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.Space()
	if s.Pos >= len(s.Data) {
		return false
	}
	switch c := s.Data[s.Pos]; {
	case c == '"':
		return s.skipString()
	case c == '{':
		s.Pos++
		if s.Consume('}') {
			return true
		}
		for {
			s.Space()
			if !s.skipString() || !s.Consume(':') || !s.skip(depth+1) {
				return false
			}
			if s.Consume('}') {
				return true
			}
			if !s.Consume(',') {
				return false
			}
		}
	case c == '[':
		s.Pos++
		if s.Consume(']') {
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			if s.Consume(']') {
				return true
			}
			if !s.Consume(',') {
				return false
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		_, ok := s.Number(false)
		return ok
	}
	for _, lit := range []string{"true", "false", "null"} {
		if len(s.Data)-s.Pos >= len(lit) && string(s.Data[s.Pos:s.Pos+len(lit)]) == lit {
			s.Pos += len(lit)
			return true
		}
	}
	return false
}

func (s *Scanner) skipString() bool {
	if s.Pos >= len(s.Data) || s.Data[s.Pos] != '"' {
		return false
	}
	s.Pos++
	for s.Pos < len(s.Data) {
		c := s.Data[s.Pos]
		switch {
		case c == '"':
			s.Pos++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if s.Pos+1 >= len(s.Data) {
				return false
			}
			switch s.Data[s.Pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.Pos += 2
				continue
			}
			return false
		}
		s.Pos++
	}
	return false
}
