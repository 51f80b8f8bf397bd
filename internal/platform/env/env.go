// Package env reads configuration from environment variables once, at start-up, and
// collects every problem so that a bad configuration fails fast with one clear message.
package env

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Reader reads typed values through a getenv function (os.Getenv in main, a map in tests).
type Reader struct {
	getenv func(string) string
	errs   []error
}

// New returns a Reader over getenv.
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// Err reports every malformed value read so far, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// Fail records that key's value is not what is wanted (a check across several keys).
func (r *Reader) Fail(key, value, want string) { r.fail(key, value, want) }

func (r *Reader) fail(key, value, want string) {
	r.errs = append(r.errs, fmt.Errorf("environment variable %s=%q: want %s", key, value, want))
}

// String returns the value of key, or fallback when it is unset or empty.
func (r *Reader) String(key, fallback string) string {
	if v := strings.TrimSpace(r.getenv(key)); v != "" {
		return v
	}
	return fallback
}

// Valid returns the value of key (fallback when unset) and records an error, saying
// what is wanted, when valid rejects it.
func (r *Reader) Valid(key, fallback string, valid func(string) bool, want string) string {
	v := r.String(key, fallback)
	if !valid(v) {
		r.fail(key, v, want)
	}
	return v
}

// Required returns the value of key and records an error when it is unset or empty.
func (r *Reader) Required(key string) string {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		r.errs = append(r.errs, fmt.Errorf("environment variable %s is required", key))
	}
	return v
}

// Int returns key as an integer in [lo, hi], or fallback when unset.
func (r *Reader) Int(key string, fallback, lo, hi int) int {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return fallback
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail(key, v, fmt.Sprintf("an integer from %d to %d", lo, hi))
		return fallback
	}
	return n
}

// Port returns key as a TCP port (1-65535), or fallback when unset.
func (r *Reader) Port(key string, fallback int) int { return r.Int(key, fallback, 1, 65535) }

// Duration returns key as a Go duration ("1.5s", "200ms") in [lo, hi], or fallback when unset.
func (r *Reader) Duration(key string, fallback, lo, hi time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return fallback
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		r.fail(key, v, fmt.Sprintf("a duration from %s to %s, like \"2s\"", lo, hi))
		return fallback
	}
	return d
}

// Float returns key as a number in [lo, hi], or fallback when unset.
func (r *Reader) Float(key string, fallback, lo, hi float64) float64 {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return fallback
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < lo || f > hi {
		r.fail(key, v, fmt.Sprintf("a number from %g to %g", lo, hi))
		return fallback
	}
	return f
}

// Bool returns key as a boolean (true/false/1/0), or fallback when unset.
func (r *Reader) Bool(key string, fallback bool) bool {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return fallback
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(key, v, "true or false")
		return fallback
	}
	return b
}
