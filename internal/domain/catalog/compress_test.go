package catalog

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/lzw"
	"compress/zlib"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

type compressResult struct {
	Codec       string  `json:"codec"`
	Level       *int    `json:"level"`
	InputBytes  int64   `json:"input_bytes"`
	OutputBytes int64   `json:"output_bytes"`
	Ratio       float64 `json:"ratio"`
	SHA256      string  `json:"sha256"`
}

// decompress reads data back with the standard library reader of codec.
func decompress(t *testing.T, codec string, data []byte) []byte {
	t.Helper()
	var (
		r   io.ReadCloser
		err error
	)
	switch codec {
	case CodecGzip:
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(data)); err == nil {
			// The header is fixed so that the output is deterministic.
			if !zr.ModTime.IsZero() || zr.Name != "" || zr.Comment != "" || zr.Extra != nil || zr.OS != 255 {
				t.Errorf("gzip header = %+v, want no time, name, comment or extra and OS 255", zr.Header)
			}
			zr.Multistream(false)
			r = zr
		}
	case CodecZlib:
		r, err = zlib.NewReader(bytes.NewReader(data))
	case CodecFlate:
		r = flate.NewReader(bytes.NewReader(data))
	case CodecLZW:
		r = lzw.NewReader(bytes.NewReader(data), lzw.LSB, 8)
	default:
		t.Fatalf("no reader for codec %q", codec)
	}
	if err != nil {
		t.Fatalf("open %s stream: %v", codec, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress %s: %v", codec, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close %s reader: %v", codec, err)
	}
	return out
}

// checkCompressed checks a compress result against its payload's codec and level and
// returns the decompressed input.
func checkCompressed(t *testing.T, res Result, codec string, level *int) []byte {
	t.Helper()
	out := decode[compressResult](t, res)
	suffix := map[string]string{CodecGzip: "gz", CodecZlib: "zlib", CodecFlate: "deflate", CodecLZW: "lzw"}[codec]
	if len(res.Files) != 1 || res.Files[0].Suffix != suffix {
		t.Fatalf("files = %d (%v), want one named %q", len(res.Files), fileNames(res.Files), suffix)
	}
	data := res.Files[0].Data
	input := decompress(t, codec, data)
	sum := sha256.Sum256(data)
	if out.Codec != codec || out.InputBytes != int64(len(input)) || out.OutputBytes != int64(len(data)) ||
		out.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("output = %s; file has %d bytes (sha256 %x) and %d bytes of %s input",
			res.Output, len(data), sum, len(input), codec)
	}
	if wantRatio := math.Round(float64(len(input))/float64(len(data))*1e4) / 1e4; out.Ratio != wantRatio {
		t.Errorf("ratio = %v, want %v", out.Ratio, wantRatio)
	}
	if (out.Level == nil) != (level == nil) || (level != nil && *out.Level != *level) {
		t.Errorf("output %s has the wrong level, want %v", res.Output, ptrString(level))
	}
	return input
}

func fileNames(files []task.File) []string {
	var names []string
	for _, f := range files {
		names = append(names, f.Suffix)
	}
	return names
}

func ptrString(p *int) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

func TestCompressGivenData(t *testing.T) {
	t.Parallel()
	level := func(n int) *int { return &n }
	text := strings.Repeat("hello, compressed world; ", 8000) // 200000 bytes: several chunks
	tests := []struct {
		name  string
		data  string
		codec string // "" for the default
		level *int   // nil: absent from the payload
		want  *int   // level in the output; nil for lzw
	}{
		{"defaults", "hello hello hello", "", nil, level(-1)},
		{"gzip level 6", text, CodecGzip, level(6), level(6)},
		{"gzip level 0", text, CodecGzip, level(0), level(0)},
		{"gzip level 9", text, CodecGzip, level(9), level(9)},
		{"zlib", text, CodecZlib, nil, level(-1)},
		{"zlib level 1", text, CodecZlib, level(1), level(1)},
		{"flate", text, CodecFlate, level(5), level(5)},
		{"lzw", text, CodecLZW, nil, nil},
		{"empty gzip", "", CodecGzip, nil, level(-1)},
		{"empty lzw", "", CodecLZW, nil, nil},
		{"one byte", "x", CodecFlate, level(-1), level(-1)},
		{"unicode", strings.Repeat("日本語 ünïcode 🌍\n", 3000), CodecZlib, level(9), level(9)},
		{"escapes", "a\"b\\c\u0000\u001f\n", CodecLZW, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			payload := map[string]any{"data": tc.data}
			codec := CodecGzip
			if tc.codec != "" {
				payload["codec"], codec = tc.codec, tc.codec
			}
			if tc.level != nil {
				payload["level"] = *tc.level
			}
			raw, err := json.Marshal(payload)
			if err != nil {
				t.Fatal(err)
			}
			res := run(t, NameCompress, string(raw))
			if input := checkCompressed(t, res, codec, tc.want); !bytes.Equal(input, []byte(tc.data)) {
				t.Errorf("decompressed %d bytes that differ from the %d bytes given", len(input), len(tc.data))
			}
			// The levels are really applied: level 0 stores, so it cannot shrink the data.
			out := decode[compressResult](t, res)
			if tc.level != nil && *tc.level == 0 && out.OutputBytes <= out.InputBytes {
				t.Errorf("level 0 gave %d bytes from %d, want stored blocks", out.OutputBytes, out.InputBytes)
			}
			if len(tc.data) == len(text) && *ptrOr(tc.level, -1) != 0 && out.Ratio < 10 {
				t.Errorf("repetitive text compressed only %vx", out.Ratio)
			}
		})
	}
}

func ptrOr(p *int, def int) *int {
	if p == nil {
		return &def
	}
	return p
}

// vocabulary is the word list of generated text, restated here from the spec of the
// generator's output: these words separated by single spaces and newlines.
var vocabulary = strings.Fields("the of and to in is that it was for on are with as his they be at one have " +
	"this from or had by word but what some we can out other were all there when up use your how said " +
	"an each she which do their time if will way about many then them write would like so these her long " +
	"make thing see him two has look more day could go come did number sound no most people my over")

func TestCompressGenerated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind  string // "" for the default, text
		size  int
		seed  int64
		codec string
	}{
		{"", 1, 0, CodecGzip},
		{KindText, 1000, 1, CodecGzip},
		{KindText, 300_001, 42, CodecZlib},
		{KindRandom, 7, 3, CodecFlate},
		{KindRandom, 200_003, -5, CodecGzip},
		{KindZeros, 150_000, 9, CodecLZW},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %d %s", tc.kind, tc.size, tc.codec), func(t *testing.T) {
			t.Parallel()
			gen := fmt.Sprintf(`"size":%d,"seed":%d`, tc.size, tc.seed)
			if tc.kind != "" {
				gen += fmt.Sprintf(`,"kind":%q`, tc.kind)
			}
			res := run(t, NameCompress, fmt.Sprintf(`{"generate":{%s},"codec":%q}`, gen, tc.codec))
			var level *int
			if tc.codec != CodecLZW {
				level = new(-1)
			}
			input := checkCompressed(t, res, tc.codec, level)
			if len(input) != tc.size {
				t.Fatalf("generated %d bytes, want %d", len(input), tc.size)
			}
			checkGenerated(t, cmpOr(tc.kind, KindText), input)
			out := decode[compressResult](t, res)
			switch {
			case tc.kind == KindRandom && tc.size > 1000 && out.Ratio > 1.01:
				t.Errorf("random data compressed %vx, want it incompressible", out.Ratio)
			case tc.kind == KindZeros && out.Ratio < 10:
				t.Errorf("zeros compressed only %vx", out.Ratio)
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkGenerated checks that data looks like its kind.
func checkGenerated(t *testing.T, kind string, data []byte) {
	t.Helper()
	switch kind {
	case KindZeros:
		if i := bytes.IndexFunc(data, func(r rune) bool { return r != 0 }); i >= 0 {
			t.Errorf("zeros has a non-zero byte at %d", i)
		}
	case KindRandom:
		var counts [256]int
		for _, b := range data {
			counts[b]++
		}
		if len(data) >= 1<<16 {
			for b, n := range counts {
				if n == 0 || n > 2*len(data)/256 {
					t.Errorf("random data has byte %d %d times in %d bytes", b, n, len(data))
					break
				}
			}
		}
	case KindText:
		if bytes.ContainsFunc(data, func(r rune) bool { return r != ' ' && r != '\n' && (r < 'a' || r > 'z') }) {
			t.Errorf("text has bytes other than lowercase letters, spaces and newlines: %.80q", data)
		}
		words := strings.FieldsFunc(string(data), func(r rune) bool { return r == ' ' || r == '\n' })
		if strings.Contains(string(data), "  ") || strings.HasPrefix(string(data), " ") {
			t.Errorf("text has empty words: %.80q", data)
		}
		for i, w := range words {
			last := i == len(words)-1 && !strings.HasSuffix(string(data), " ") && !strings.HasSuffix(string(data), "\n")
			ok := slices.Contains(vocabulary, w) ||
				(last && slices.ContainsFunc(vocabulary, func(v string) bool { return strings.HasPrefix(v, w) }))
			if !ok {
				t.Errorf("text word %d %q is not in the vocabulary", i, w)
				break
			}
		}
		if len(data) > 1000 {
			if lines := bytes.Count(data, []byte("\n")); lines == 0 || lines > len(words)/4 {
				t.Errorf("text has %d newlines among %d words, want about one in 12", lines, len(words))
			}
		}
	}
}

// TestCompressGeneratedStream checks that the generated data depends on the seed and
// kind only: a shorter run gives a prefix of a longer one (whose data is written in
// other pieces), and another seed gives other data.
func TestCompressGeneratedStream(t *testing.T) {
	t.Parallel()
	input := func(t *testing.T, kind string, size int, seed int64) []byte {
		t.Helper()
		payload := fmt.Sprintf(`{"generate":{"size":%d,"seed":%d,"kind":%q},"codec":"flate","level":1}`, size, seed, kind)
		res := run(t, NameCompress, payload)
		return checkCompressed(t, res, CodecFlate, new(1))
	}
	for _, kind := range []string{KindText, KindRandom} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			long := input(t, kind, 3*compressChunkMin+13, 7)
			for _, size := range []int{1, 5, 8, 13, compressChunkMin + 1} {
				if short := input(t, kind, size, 7); !bytes.Equal(short, long[:size]) {
					t.Errorf("%d bytes of seed 7 are not a prefix of %d bytes of it", size, len(long))
				}
			}
			if other := input(t, kind, 64, 8); bytes.Equal(other, long[:64]) {
				t.Errorf("seeds 7 and 8 give the same data")
			}
		})
	}
}

// TestGeneratorSplits checks the generator directly: the stream is the same however it
// is cut into reads, including reads that are not multiples of 8 bytes.
func TestGeneratorSplits(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{KindText, KindRandom, KindZeros} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			whole := make([]byte, 10_000)
			newGenerator(kind, 99).fill(whole)
			for _, step := range []int{1, 3, 7, 8, 9, 1000, 4097} {
				g := newGenerator(kind, 99)
				got := make([]byte, 0, len(whole))
				for len(got) < len(whole) {
					piece := make([]byte, min(step, len(whole)-len(got)))
					g.fill(piece)
					got = append(got, piece...)
				}
				if !bytes.Equal(got, whole) {
					t.Errorf("reads of %d bytes give another stream", step)
				}
			}
		})
	}
}

func TestCompressDeterministic(t *testing.T) {
	t.Parallel()
	for _, payload := range []string{
		`{"generate":{"size":300000,"seed":42,"kind":"text"},"codec":"gzip","level":6}`,
		`{"generate":{"size":100000,"seed":1,"kind":"random"},"codec":"zlib"}`,
		`{"data":"abcabcabc","codec":"lzw"}`,
		`{"data":"abcabcabc","codec":"flate","level":9}`,
	} {
		t.Run(payload, func(t *testing.T) {
			t.Parallel()
			checkDeterministic(t, NameCompress, payload)
		})
	}
}

func TestCompressCommonFields(t *testing.T) {
	t.Parallel()
	checkCommonFields(t, NameCompress, `{"data":"abc","codec":"zlib"}`,
		`{"timeLimitMs":1234,"data":"abc","codec":"zlib","forceFailure":5}`,
		Options{ForceFailure: 5, TimeLimit: 1234 * time.Millisecond})
}

func TestCompressProblems(t *testing.T) {
	t.Parallel()
	tooLong := `{"data":"` + strings.Repeat("a", CompressDataMaxBytes+1) + `"}`
	runProblemCases(t, NameCompress, []problemCase{
		{"neither data nor generate", `{"codec":"gzip"}`, "data", []string{"is required unless generate is given", "exactly one of data"}},
		{"both data and generate", `{"data":"a","generate":{"size":1}}`, "generate", []string{"is not allowed together with data"}},
		{"data number", `{"data":1}`, "data", []string{"must be a string of at most 1048576 bytes, got 1"}},
		{"data too long", tooLong, "data", []string{"got 1048577 bytes"}},
		{"generate not object", `{"generate":"big"}`, "generate", []string{"must be an object with fields size, seed, kind", `got "big"`}},
		{"generate empty", `{"generate":{}}`, "generate.size", []string{"is required: must be an integer between 1 and 67108864"}},
		{"generate size zero", `{"generate":{"size":0}}`, "generate.size", []string{"between 1 and 67108864, got 0"}},
		{"generate size too large", `{"generate":{"size":67108865}}`, "generate.size", []string{"got 67108865"}},
		{"generate size string", `{"generate":{"size":"1"}}`, "generate.size", []string{`got "1"`}},
		{"generate seed fraction", `{"generate":{"size":1,"seed":0.5}}`, "generate.seed", []string{"must be an integer, got 0.5"}},
		{"generate kind bad enum", `{"generate":{"size":1,"kind":"ones"}}`, "generate.kind", []string{`must be one of "text", "random", "zeros", got "ones"`}},
		{"generate unknown field", `{"generate":{"size":1,"level":1}}`, "generate.level", []string{"is not an allowed field; allowed fields are: size, seed, kind"}},
		{"codec bad enum", `{"data":"a","codec":"zip"}`, "codec", []string{`must be one of "gzip", "zlib", "flate", "lzw", got "zip"`}},
		{"codec wrong case", `{"data":"a","codec":"GZIP"}`, "codec", []string{`got "GZIP"`}},
		{"codec number", `{"data":"a","codec":1}`, "codec", []string{"got 1"}},
		{"level too high", `{"data":"a","level":10}`, "level", []string{"must be an integer between -1 and 9, got 10"}},
		{"level too low", `{"data":"a","level":-2}`, "level", []string{"between -1 and 9, got -2"}},
		{"level string", `{"data":"a","level":"9"}`, "level", []string{`got "9"`}},
		{"level with lzw", `{"data":"a","codec":"lzw","level":6}`, "level", []string{`is not allowed when codec is "lzw"`}},
		{"default level with lzw", `{"data":"a","codec":"lzw","level":-1}`, "level", []string{"which has no levels"}},
		{"unknown field", `{"data":"a","format":"zip"}`, "format", []string{"is not an allowed field; allowed fields are: data, generate, codec, level, forceFailure, timeLimitMs"}},
	})
	t.Run("limits are inclusive", func(t *testing.T) {
		t.Parallel()
		prepare(t, NameCompress, `{"data":"`+strings.Repeat("a", CompressDataMaxBytes)+`"}`)
		prepare(t, NameCompress, fmt.Sprintf(`{"generate":{"size":%d,"seed":-9007199254740993}}`, CompressGenerateMax))
		prepare(t, NameCompress, `{"data":"","codec":"flate","level":9}`)
	})
}

func TestCompressCancel(t *testing.T) {
	t.Parallel()
	for _, payload := range []string{
		fmt.Sprintf(`{"generate":{"size":%d,"kind":"zeros"}}`, CompressGenerateMax),
		fmt.Sprintf(`{"generate":{"size":%d,"kind":"random"},"codec":"lzw"}`, CompressGenerateMax),
	} {
		t.Run("midway "+payload, func(t *testing.T) {
			t.Parallel()
			checkCancelsMidway(t, NameCompress, payload)
		})
	}
	for _, payload := range []string{`{"generate":{"size":1000}}`, `{"data":""}`, `{"data":"","codec":"lzw"}`} {
		t.Run("before start "+payload, func(t *testing.T) {
			t.Parallel()
			checkPreCancelled(t, NameCompress, payload)
		})
	}
}
