package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/taskgrid/taskgrid/internal/platform/env"
)

// Keys are the API keys of the public API, by name, from the keys file (API_KEYS_FILE).
// With keys, every /api/v1 route and the event stream require "Authorization: Bearer
// <key>", and a task is visible only to the key (its name) that submitted it. A nil
// *Keys checks nothing.
type Keys struct {
	names []string
	keys  []env.Secret
}

// String says how many keys there are (never the keys).
func (k *Keys) String() string {
	if k == nil {
		return "none"
	}
	return fmt.Sprintf("%d keys (%s)", len(k.names), strings.Join(k.names, ", "))
}

// minKeyLen is the shortest key the keys file may hold (a key is a password: 128 bits
// as 32 hex digits is the least one should generate).
const minKeyLen = 16

// LoadKeys reads a keys file: one key a line as "name:key" (the name is what the task
// records keep, so a key can be rotated under the same name); blank lines and lines
// starting with # are skipped.
func LoadKeys(path string) (*Keys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read API keys: %w", err)
	}
	defer f.Close()
	k := &Keys{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, key, ok := strings.Cut(line, ":")
		name, key = strings.TrimSpace(name), strings.TrimSpace(key)
		switch {
		case !ok || name == "" || strings.ContainsAny(name, " \t"):
			return nil, fmt.Errorf("API keys file %s, line %d: want name:key", path, n)
		case len(key) < minKeyLen || strings.ContainsAny(key, " \t"):
			return nil, fmt.Errorf("API keys file %s, line %d (%s): the key must be at least %d characters without spaces", path, n, name, minKeyLen)
		case seen[name]:
			return nil, fmt.Errorf("API keys file %s, line %d: name %s appears twice", path, n, name)
		}
		seen[name] = true
		k.names = append(k.names, name)
		k.keys = append(k.keys, env.Secret(key))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read API keys: %w", err)
	}
	if len(k.names) == 0 {
		return nil, fmt.Errorf("API keys file %s holds no key", path)
	}
	return k, nil
}

// owner returns the name of the key the request carries, comparing it with every key
// in constant time.
func (k *Keys) owner(r *http.Request) (string, bool) {
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	got = strings.TrimSpace(got)
	match := -1
	for i, key := range k.keys {
		if key.Matches(got) {
			match = i // no early return: the time taken does not say which key matched
		}
	}
	if match < 0 {
		return "", false
	}
	return k.names[match], true
}

type ownerKey struct{}

// ownerOf is the key name the request was authenticated with ("" without keys).
func ownerOf(ctx context.Context) string {
	s, _ := ctx.Value(ownerKey{}).(string)
	return s
}

// Require answers 401 to a request without a valid key, and puts the key's name in the
// context of the others.
func (k *Keys) Require(next http.Handler) http.Handler {
	if k == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := k.owner(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="taskgrid"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: errorPayload{Code: "unauthenticated",
				Message: "this gateway needs an API key: send it as Authorization: Bearer <key>"}})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ownerKey{}, name)))
	})
}

// isLoopback reports whether host (an address to listen on) reaches only this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
