package catalog

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

type wordcountResult struct {
	Words  int         `json:"words"`
	Lines  int         `json:"lines"`
	Chars  int         `json:"chars"`
	Unique int         `json:"unique"`
	Top    []WordCount `json:"top"`
}

func wordcountPayload(t *testing.T, text string, top int) string {
	t.Helper()
	payload := map[string]any{"text": text}
	if top > 0 {
		payload["top"] = top
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestWordcountResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		top  int // 0: absent from the payload
		want wordcountResult
	}{
		{
			name: "example", top: 3,
			text: "The quick brown fox jumps over the lazy dog.\nThe dog sleeps.",
			want: wordcountResult{Words: 12, Lines: 2, Chars: 60, Unique: 9,
				Top: []WordCount{{"the", 3}, {"dog", 2}, {"brown", 1}}},
		},
		{
			name: "empty", text: "",
			want: wordcountResult{Top: []WordCount{}},
		},
		{
			name: "only separators", text: " .,;\n\t-\n",
			want: wordcountResult{Lines: 2, Chars: 8, Top: []WordCount{}},
		},
		{
			name: "one word", text: "word",
			want: wordcountResult{Words: 1, Lines: 1, Chars: 4, Unique: 1, Top: []WordCount{{"word", 1}}},
		},
		{
			name: "trailing newline", text: "a\n",
			want: wordcountResult{Words: 1, Lines: 1, Chars: 2, Unique: 1, Top: []WordCount{{"a", 1}}},
		},
		{
			name: "blank lines", text: "a\nb\n\n",
			want: wordcountResult{Words: 2, Lines: 3, Chars: 5, Unique: 2, Top: []WordCount{{"a", 1}, {"b", 1}}},
		},
		{
			name: "punctuation splits words", text: "don't stop-me now_now",
			want: wordcountResult{Words: 6, Lines: 1, Chars: 21, Unique: 5,
				Top: []WordCount{{"now", 2}, {"don", 1}, {"me", 1}, {"stop", 1}, {"t", 1}}},
		},
		{
			name: "case and digits", text: "Go GO go 42 go42 4 2",
			want: wordcountResult{Words: 7, Lines: 1, Chars: 20, Unique: 5,
				Top: []WordCount{{"go", 3}, {"2", 1}, {"4", 1}, {"42", 1}, {"go42", 1}}},
		},
		{
			name: "unicode", text: "Ünïcode ÜNÏCODE 日本語 café\r\nCAFÉ",
			want: wordcountResult{Words: 5, Lines: 2, Chars: 30, Unique: 3,
				Top: []WordCount{{"café", 2}, {"ünïcode", 2}, {"日本語", 1}}},
		},
		{
			name: "top cuts ties alphabetically", text: "d c b a c d", top: 2,
			want: wordcountResult{Words: 6, Lines: 1, Chars: 11, Unique: 4, Top: []WordCount{{"c", 2}, {"d", 2}}},
		},
		{
			name: "top above unique", text: "b a", top: 100,
			want: wordcountResult{Words: 2, Lines: 1, Chars: 3, Unique: 2, Top: []WordCount{{"a", 1}, {"b", 1}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := decode[wordcountResult](t, run(t, NameWordcount, wordcountPayload(t, tc.text, tc.top)))
			if got.Words != tc.want.Words || got.Lines != tc.want.Lines || got.Chars != tc.want.Chars ||
				got.Unique != tc.want.Unique || !slices.Equal(got.Top, tc.want.Top) {
				t.Errorf("wordcount(%q) = %+v, want %+v", tc.text, got, tc.want)
			}
		})
	}
}

// TestWordcountOutputShape checks that top defaults to 10 and that the top list is
// [] rather than null when there are no words.
func TestWordcountOutputShape(t *testing.T) {
	t.Parallel()
	t.Run("default top", func(t *testing.T) {
		t.Parallel()
		var words []string
		for i := range 15 {
			words = append(words, strings.Repeat(fmt.Sprintf("w%02d ", i), 15-i)) // w00 15 times ... w14 once
		}
		got := decode[wordcountResult](t, run(t, NameWordcount, wordcountPayload(t, strings.Join(words, ""), 0)))
		if len(got.Top) != WordcountTopDefault || got.Top[0] != (WordCount{"w00", 15}) || got.Top[9] != (WordCount{"w09", 6}) {
			t.Errorf("top = %+v, want w00 (15) to w09 (6)", got.Top)
		}
		if got.Unique != 15 || got.Words != 120 {
			t.Errorf("unique %d, words %d; want 15, 120", got.Unique, got.Words)
		}
	})
	t.Run("empty text", func(t *testing.T) {
		t.Parallel()
		res := run(t, NameWordcount, `{"text":""}`)
		if want := `{"words":0,"lines":0,"chars":0,"unique":0,"top":[]}`; string(res.Output) != want {
			t.Errorf("output = %s, want %s", res.Output, want)
		}
		if res.Files != nil {
			t.Errorf("wordcount returned %d files, want none", len(res.Files))
		}
	})
}

// TestWordcountLargeText counts a text spanning many progress chunks, whose counts
// follow from how it is built.
func TestWordcountLargeText(t *testing.T) {
	t.Parallel()
	const reps = 15_000
	text := strings.Repeat("alpha beta Beta\n", reps) + "gamma"
	job, _ := prepare(t, NameWordcount, wordcountPayload(t, text, 0))
	var reports []float64
	res, err := job.Run(t.Context(), func(x float64) { reports = append(reports, x) })
	if err != nil {
		t.Fatal(err)
	}
	checkProgress(t, reports)
	if len(reports) < 5 {
		t.Errorf("progress reported %d times over %d bytes, want one per %d-byte chunk", len(reports), len(text), wordcountChunk)
	}
	got := decode[wordcountResult](t, res)
	want := wordcountResult{
		Words: 3*reps + 1, Lines: reps + 1, Chars: 16*reps + 5, Unique: 3,
		Top: []WordCount{{"beta", 2 * reps}, {"alpha", reps}, {"gamma", 1}},
	}
	if got.Words != want.Words || got.Lines != want.Lines || got.Chars != want.Chars ||
		got.Unique != want.Unique || !slices.Equal(got.Top, want.Top) {
		t.Errorf("wordcount = %+v, want %+v", got, want)
	}
}

func TestWordcountDeterministic(t *testing.T) {
	t.Parallel()
	// Many words tied at one count: the order must not depend on map iteration.
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "word%d ", i*7919%1000)
	}
	for _, payload := range []string{wordcountPayload(t, b.String(), 100), `{"text":"b a c b a"}`} {
		t.Run(fmt.Sprint(len(payload)), func(t *testing.T) {
			t.Parallel()
			checkDeterministic(t, NameWordcount, payload)
		})
	}
}

func TestWordcountCommonFields(t *testing.T) {
	t.Parallel()
	checkCommonFields(t, NameWordcount, `{"text":"a b a","top":1}`,
		`{"text":"a b a","top":1,"forceFailure":1,"timeLimitMs":30000}`,
		Options{ForceFailure: 1, TimeLimit: WordcountTimeLimit})
	if _, opts := prepare(t, NameWordcount, `{"text":"a","timeLimitMs":5}`); opts.TimeLimit != 5*time.Millisecond {
		t.Errorf("time limit = %s, want 5ms", opts.TimeLimit)
	}
}

func TestWordcountProblems(t *testing.T) {
	t.Parallel()
	tooLong := `{"text":"` + strings.Repeat("a", WordcountTextMaxBytes+1) + `"}`
	runProblemCases(t, NameWordcount, []problemCase{
		{"missing text", `{"top":3}`, "text", []string{"is required: must be a string of at most 1048576 bytes"}},
		{"text number", `{"text":12}`, "text", []string{"must be a string of at most 1048576 bytes, got 12"}},
		{"text array", `{"text":["a"]}`, "text", []string{"got an array"}},
		{"text too long", tooLong, "text", []string{"got 1048577 bytes"}},
		{"top zero", `{"text":"a","top":0}`, "top", []string{"must be an integer between 1 and 100, got 0"}},
		{"top too large", `{"text":"a","top":101}`, "top", []string{"between 1 and 100, got 101"}},
		{"top string", `{"text":"a","top":"3"}`, "top", []string{`got "3"`}},
		{"top fraction", `{"text":"a","top":2.5}`, "top", []string{"got 2.5"}},
		{"unknown field", `{"text":"a","lang":"en"}`, "lang", []string{"is not an allowed field; allowed fields are: text, top, forceFailure, timeLimitMs"}},
	})
	t.Run("text at its limit", func(t *testing.T) {
		t.Parallel()
		prepare(t, NameWordcount, `{"text":"`+strings.Repeat("a", WordcountTextMaxBytes)+`","top":100}`)
	})
}

func TestWordcountCancel(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("word ", WordcountTextMaxBytes/5)
	t.Run("midway", func(t *testing.T) {
		t.Parallel()
		checkCancelsMidway(t, NameWordcount, wordcountPayload(t, text, 0))
	})
	t.Run("before start", func(t *testing.T) {
		t.Parallel()
		checkPreCancelled(t, NameWordcount, wordcountPayload(t, text, 0))
	})
}
