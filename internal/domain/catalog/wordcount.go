package catalog

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// wordcountChunk is how many bytes of text are read between ctx checks and progress reports.
const wordcountChunk = 16 << 10

type wordcountType struct{}

// Wordcount counts the words, lines and characters of a text and its most frequent words.
func Wordcount() Type { return wordcountType{} }

func (wordcountType) Spec() Spec {
	return Spec{
		Name: NameWordcount,
		Description: "Counts words (runs of Unicode letters and digits, lowercased), lines and characters, " +
			"and lists the most frequent words (ties in alphabetical order).",
		Fields:    wordcountFields(),
		Example:   json.RawMessage(`{"text":"The quick brown fox jumps over the lazy dog.\nThe dog sleeps.","top":3}`),
		TimeLimit: WordcountTimeLimit,
	}
}

func wordcountFields() []Field {
	return []Field{
		{Name: "text", Type: TypeString, Required: true, MaxBytes: WordcountTextMaxBytes, Description: "Text to count."},
		{
			Name: "top", Type: TypeInteger, Default: WordcountTopDefault,
			Min: bound(WordcountTopMin), Max: bound(WordcountTopMax),
			Description: "How many of the most frequent words to list.",
		},
	}
}

func (wordcountType) Prepare(payload json.RawMessage) (Job, error) {
	var p problems
	v := decodeObject("", payload, wordcountFields(), &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return &wordcountJob{text: v.str("text"), top: int(v.int("top"))}, nil
}

type wordcountJob struct {
	text string
	top  int
}

// WordCount is one entry of a wordcount result's top list.
type WordCount struct {
	Word  string `json:"word"`
	Count int    `json:"count"`
}

type wordcountOutput struct {
	Words  int         `json:"words"`
	Lines  int         `json:"lines"` // newlines, plus one for a last line without one
	Chars  int         `json:"chars"` // Unicode code points
	Unique int         `json:"unique"`
	Top    []WordCount `json:"top"`
}

func (j *wordcountJob) Run(ctx context.Context, progress ProgressFunc) (Result, error) {
	pr := newProgress(progress)
	var (
		out    wordcountOutput
		counts = map[string]int{}
		word   strings.Builder
		check  = wordcountChunk
	)
	endWord := func() {
		if word.Len() > 0 {
			counts[word.String()]++
			out.Words++
			word.Reset()
		}
	}
	for i, r := range j.text {
		if i >= check {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
			pr.set(float64(i) / float64(len(j.text)))
			check += wordcountChunk
		}
		out.Chars++
		if r == '\n' {
			out.Lines++
		}
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			word.WriteRune(unicode.ToLower(r))
		} else {
			endWord()
		}
	}
	endWord()
	if j.text != "" && !strings.HasSuffix(j.text, "\n") {
		out.Lines++
	}
	out.Unique = len(counts)
	out.Top = topWords(counts, j.top)
	data, err := json.Marshal(out)
	if err != nil {
		return Result{}, fmt.Errorf("encode wordcount output: %w", err)
	}
	pr.finish()
	return Result{Output: data}, nil
}

// topWords returns the n most frequent words, ties broken alphabetically.
func topWords(counts map[string]int, n int) []WordCount {
	all := make([]WordCount, 0, len(counts))
	for w, c := range counts {
		all = append(all, WordCount{Word: w, Count: c})
	}
	slices.SortFunc(all, func(a, b WordCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Word, b.Word))
	})
	return all[:min(n, len(all))]
}
