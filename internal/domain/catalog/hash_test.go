package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

type hashResult struct {
	Algorithm  string `json:"algorithm"`
	Iterations int64  `json:"iterations"`
	Hex        string `json:"hex"`
}

// iteratedSHA256 is the reference: sha256 of data, then of each digest in turn.
func iteratedSHA256(data []byte, iterations int) string {
	sum := sha256.Sum256(data)
	for range iterations - 1 {
		sum = sha256.Sum256(sum[:])
	}
	return hex.EncodeToString(sum[:])
}

func TestHashResult(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("0123456789abcdef", 4096)
	tests := []struct {
		name       string
		data       string
		iterations int // 0: absent from the payload
		want       int // iterations expected in the output
	}{
		{"once", "hello", 1, 1},
		{"twice", "hello", 2, 2},
		{"default iterations", "hello", 0, HashIterationsDefault},
		{"one chunk", "hello", hashChunk, hashChunk},
		{"across chunks", "hello", 2*hashChunk + 7, 2*hashChunk + 7},
		{"empty data", "", 3, 3},
		{"unicode", "héllo, 世界 🌍", 5, 5},
		{"escapes", "a\"b\\c\nd\te\u0000", 1, 1},
		{"long data", long, 10, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			payload := map[string]any{"data": tc.data}
			if tc.iterations > 0 {
				payload["iterations"] = tc.iterations
			}
			raw, err := json.Marshal(payload)
			if err != nil {
				t.Fatal(err)
			}
			got := decode[hashResult](t, run(t, NameHash, string(raw)))
			want := hashResult{Algorithm: "sha256", Iterations: int64(tc.want), Hex: iteratedSHA256([]byte(tc.data), tc.want)}
			if got != want {
				t.Errorf("hash = %+v, want %+v", got, want)
			}
		})
	}
}

// TestHashKnownVectors pins results to digests computed outside Go.
func TestHashKnownVectors(t *testing.T) {
	t.Parallel()
	tests := []struct{ payload, hex string }{
		// echo -n hello | sha256sum
		{`{"data":"hello","iterations":1}`, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"},
		// echo -n "" | sha256sum
		{`{"data":"","iterations":1}`, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		// echo -n abc | sha256sum
		{`{"data":"abc","iterations":1}`, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tc := range tests {
		t.Run(tc.payload, func(t *testing.T) {
			t.Parallel()
			if got := decode[hashResult](t, run(t, NameHash, tc.payload)); got.Hex != tc.hex {
				t.Errorf("hex = %s, want %s", got.Hex, tc.hex)
			}
		})
	}
}

func TestHashOutputShape(t *testing.T) {
	t.Parallel()
	res := run(t, NameHash, `{"data":"hello","iterations":1}`)
	want := `{"algorithm":"sha256","iterations":1,"hex":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}`
	if string(res.Output) != want {
		t.Errorf("output = %s, want %s", res.Output, want)
	}
	if res.Files != nil {
		t.Errorf("hash returned %d files, want none", len(res.Files))
	}
}

func TestHashDeterministic(t *testing.T) {
	t.Parallel()
	for _, payload := range []string{`{"data":"hello","iterations":100000}`, `{"data":"x"}`} {
		t.Run(payload, func(t *testing.T) {
			t.Parallel()
			checkDeterministic(t, NameHash, payload)
		})
	}
}

func TestHashCommonFields(t *testing.T) {
	t.Parallel()
	checkCommonFields(t, NameHash, `{"data":"abc","iterations":3}`,
		`{"data":"abc","iterations":3,"forceFailure":100,"timeLimitMs":60000}`,
		Options{ForceFailure: 100, TimeLimit: time.Minute})
}

func TestHashProblems(t *testing.T) {
	t.Parallel()
	tooLong := `{"data":"` + strings.Repeat("a", HashDataMaxBytes+1) + `"}`
	runProblemCases(t, NameHash, []problemCase{
		{"missing data", `{"iterations":5}`, "data", []string{"is required: must be a string of at most 1048576 bytes"}},
		{"data number", `{"data":5}`, "data", []string{"must be a string of at most 1048576 bytes, got 5"}},
		{"data object", `{"data":{"a":1}}`, "data", []string{"got an object"}},
		{"data null", `{"data":null}`, "data", []string{"got null"}},
		{"data too long", tooLong, "data", []string{"got 1048577 bytes"}},
		{"iterations zero", `{"data":"a","iterations":0}`, "iterations", []string{"must be an integer between 1 and 10000000, got 0"}},
		{"iterations too many", `{"data":"a","iterations":10000001}`, "iterations", []string{"between 1 and 10000000, got 10000001"}},
		{"iterations string", `{"data":"a","iterations":"5"}`, "iterations", []string{`got "5"`}},
		{"iterations fraction", `{"data":"a","iterations":2.5}`, "iterations", []string{"got 2.5"}},
		{"iterations bool", `{"data":"a","iterations":true}`, "iterations", []string{"got true"}},
		{"unknown field", `{"data":"a","algorithm":"md5"}`, "algorithm", []string{"is not an allowed field; allowed fields are: data, iterations, forceFailure, timeLimitMs"}},
	})
	t.Run("bounds are inclusive", func(t *testing.T) {
		t.Parallel()
		prepare(t, NameHash, fmt.Sprintf(`{"data":"%s","iterations":%d}`, strings.Repeat("a", HashDataMaxBytes), HashIterationsMax))
		prepare(t, NameHash, `{"data":"a","iterations":1e7}`)
	})
}

func TestHashCancel(t *testing.T) {
	t.Parallel()
	t.Run("midway", func(t *testing.T) {
		t.Parallel()
		checkCancelsMidway(t, NameHash, fmt.Sprintf(`{"data":"hello","iterations":%d}`, HashIterationsMax))
	})
	t.Run("before start", func(t *testing.T) {
		t.Parallel()
		checkPreCancelled(t, NameHash, fmt.Sprintf(`{"data":"hello","iterations":%d}`, 3*hashChunk))
	})
}
