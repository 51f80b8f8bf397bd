package env

import "crypto/subtle"

// Secret is a configuration value that must never be printed (a token, a key): its
// String and GoString give "[redacted]", so a logged configuration shows only whether
// it is set.
type Secret string

// Secret returns the value of key as a Secret ("" when unset).
func (r *Reader) Secret(key string) Secret { return Secret(r.String(key, "")) }

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// Reveal returns the value itself, for the one place that sends or compares it.
func (s Secret) Reveal() string { return string(s) }

// Matches reports, in constant time for a given length, whether got is the secret. An
// empty secret matches nothing.
func (s Secret) Matches(got string) bool {
	return s != "" && subtle.ConstantTimeCompare([]byte(s), []byte(got)) == 1
}
