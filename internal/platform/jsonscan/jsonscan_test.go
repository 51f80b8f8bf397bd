package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestUnquote(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{`"plain"`, "plain", true},
		{`"a\"b\\c\/d\b\f\n\r\te"`, "a\"b\\c/d\b\f\n\r\te", true},
		{`"{\"id\":\"x\"}\n{\"id\":\"y\"}\n"`, "{\"id\":\"x\"}\n{\"id\":\"y\"}\n", true},
		{`"ünïcode"`, "ünïcode", true},
		{`"\u0041"`, "", false},   // left to encoding/json
		{`"\x"`, "", false},       // not an escape
		{"\"a\tb\"", "", false},   // a control character
		{"\"a\xffb\"", "", false}, // invalid UTF-8: encoding/json replaces it
		{`"open`, "", false},
		{`"\`, "", false},
		{`x`, "", false},
	}
	for _, tt := range tests {
		s := Scanner{Data: []byte(tt.in)}
		got, ok := s.Unquote()
		if ok != tt.ok || (ok && string(got) != tt.want) {
			t.Errorf("Unquote(%s) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSkip(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{`{"a":[1,-2.5e+3,true,false,null,"s\"\n",{"b":{}},[]],"c":""}`, true},
		{` [ 1 , { } ] `, true},
		{`"\u00e9"`, false}, // left to encoding/json
		{`{"a":1,}`, false},
		{`[1 2]`, false},
		{`{"a"}`, false},
		{`tru`, false},
		{`01`, false}, // a leading zero
		{`-`, false},
		{`1.`, false},
		{`{`, false},
		{strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), true},
		{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), false}, // encoding/json refuses it too
	}
	for _, tt := range tests {
		s := Scanner{Data: []byte(tt.in)}
		if ok := s.Skip(); ok != tt.ok {
			t.Errorf("Skip(%.40s) = %v, want %v", tt.in, ok, tt.ok)
		}
	}
}

// What Skip reads whole, encoding/json finds valid.
func FuzzSkip(f *testing.F) {
	for _, seed := range []string{`{"a":[1,-2.5e+3,true,false,null,"s\"\n",{"b":{}},[]],"c":""}`, `"x"`, `0`, `[]`, `{"a":"\u00e9"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := Scanner{Data: data}
		if s.Skip() && s.End() && !json.Valid(data) {
			t.Fatalf("Skip read %q whole, which encoding/json finds invalid", data)
		}
	})
}

// What Unquote takes, encoding/json decodes to the same string.
func FuzzUnquote(f *testing.F) {
	for _, seed := range []string{`"a\"b\\c\/d\b\f\n\r\te"`, `"ünïcode"`, `"\u0041"`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := Scanner{Data: data}
		got, ok := s.Unquote()
		if !ok || !s.End() {
			return
		}
		var want string
		if err := json.Unmarshal(data, &want); err != nil || want != string(got) {
			t.Fatalf("Unquote(%q) = %q; encoding/json: %q, %v", data, got, want, err)
		}
	})
}
