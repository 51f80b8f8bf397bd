package catalog

import (
	"compress/flate"
	"compress/gzip"
	"compress/lzw"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// Codecs of compress, and the file name suffix of each one's output.
const (
	CodecGzip  = "gzip"
	CodecZlib  = "zlib"
	CodecFlate = "flate"
	CodecLZW   = "lzw"
)

// compressChunkMin is the smallest piece of input written at a time; larger inputs
// go in about 100 pieces, with a ctx check and a progress report after each.
const compressChunkMin = 64 << 10

func codecSuffix(codec string) string {
	switch codec {
	case CodecGzip:
		return "gz"
	case CodecZlib:
		return "zlib"
	case CodecFlate:
		return "deflate"
	}
	return "lzw"
}

type compressType struct{}

// Compress compresses given or generated data with a standard library codec.
func Compress() Type { return compressType{} }

func (compressType) Spec() Spec {
	return Spec{
		Name:        NameCompress,
		Description: "Compresses data (given, or generated from a seed) with gzip, zlib, flate or lzw.",
		Fields:      compressFields(),
		Example:     json.RawMessage(`{"generate":{"size":1048576,"seed":42,"kind":"text"},"codec":"gzip","level":6}`),
		TimeLimit:   CompressTimeLimit,
	}
}

func compressFields() []Field {
	return []Field{
		{
			Name: "data", Type: TypeString, MaxBytes: CompressDataMaxBytes,
			Description: "Data to compress (its UTF-8 bytes). Exactly one of data and generate.",
		},
		{
			Name: "generate", Type: TypeObject,
			Description: "Generate the data instead. Exactly one of data and generate.",
			Fields: []Field{
				{
					Name: "size", Type: TypeInteger, Required: true,
					Min: bound(1), Max: bound(CompressGenerateMax),
					Description: "Bytes to generate.",
				},
				{
					Name: "seed", Type: TypeInteger, Default: 0,
					Description: "Seed of the generator: the same seed gives the same data.",
				},
				{
					Name: "kind", Type: TypeString, Default: CompressKindDefault,
					Enum:        []string{KindText, KindRandom, KindZeros},
					Description: "text (words, compresses well), random (incompressible) or zeros.",
				},
			},
		},
		{
			Name: "codec", Type: TypeString, Default: CompressCodecDefault,
			Enum:        []string{CodecGzip, CodecZlib, CodecFlate, CodecLZW},
			Description: "Compression format.",
		},
		{
			Name: "level", Type: TypeInteger, Default: CompressLevelDefault,
			Min: bound(CompressLevelMin), Max: bound(CompressLevelMax),
			Description: "Compression level, -1 for the codec's default; not allowed for lzw.",
		},
	}
}

func (compressType) Prepare(payload json.RawMessage) (Job, error) {
	var p problems
	v := decodeObject("", payload, compressFields(), &p)
	job := &compressJob{codec: v.str("codec"), level: int(v.int("level"))}
	switch {
	case v.sentField("data") && v.sentField("generate"):
		p.add("generate", "is not allowed together with data: send exactly one of data and generate")
	case !v.sentField("data") && !v.sentField("generate"):
		p.add("data", "is required unless generate is given: send exactly one of data (%s) and generate (%s)",
			describe(compressFields()[0]), describe(compressFields()[1]))
	case v.has("data"):
		job.data = []byte(v.str("data"))
		job.size = int64(len(job.data))
	case v.has("generate"):
		gen := v.object("generate")
		job.generate, job.size, job.seed, job.kind = true, gen.int("size"), gen.int("seed"), gen.str("kind")
	}
	if job.codec == CodecLZW && v.sentField("level") {
		p.add("level", "is not allowed when codec is %q, which has no levels", CodecLZW)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return job, nil
}

type compressJob struct {
	codec    string
	level    int
	data     []byte // the input, unless generate
	generate bool
	size     int64 // input bytes
	seed     int64
	kind     string
}

type compressOutput struct {
	Codec       string  `json:"codec"`
	Level       *int    `json:"level"` // null for lzw
	InputBytes  int64   `json:"input_bytes"`
	OutputBytes int64   `json:"output_bytes"`
	Ratio       float64 `json:"ratio"` // input_bytes / output_bytes, to 4 decimals
	SHA256      string  `json:"sha256"`
}

func (j *compressJob) Run(ctx context.Context, progress ProgressFunc) (Result, error) {
	pr := newProgress(progress)
	w := &ctxWriter{ctx: ctx}
	cw, err := j.compressor(w)
	if err != nil {
		return Result{}, err
	}
	var gen *generator
	if j.generate {
		gen = newGenerator(j.kind, j.seed)
	}
	chunk := max(compressChunkMin, j.size/100+1)
	buf := make([]byte, min(chunk, j.size))
	for done := int64(0); done < j.size; {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		n := min(chunk, j.size-done)
		piece := buf[:n]
		if gen != nil {
			gen.fill(piece)
		} else {
			piece = j.data[done : done+n]
		}
		if _, err := cw.Write(piece); err != nil {
			return Result{}, compressErr(ctx, err)
		}
		done += n
		pr.set(0.99 * float64(done) / float64(j.size))
	}
	if err := cw.Close(); err != nil {
		return Result{}, compressErr(ctx, err)
	}
	return j.result(w.buf, pr)
}

func (j *compressJob) result(compressed []byte, pr *progressReporter) (Result, error) {
	sum := sha256.Sum256(compressed)
	out := compressOutput{
		Codec:       j.codec,
		InputBytes:  j.size,
		OutputBytes: int64(len(compressed)),
		SHA256:      hex.EncodeToString(sum[:]),
	}
	if j.codec != CodecLZW {
		out.Level = &j.level
	}
	if len(compressed) > 0 {
		out.Ratio = math.Round(float64(j.size)/float64(len(compressed))*1e4) / 1e4
	}
	data, err := json.Marshal(out)
	if err != nil {
		return Result{}, fmt.Errorf("encode compress output: %w", err)
	}
	pr.finish()
	return Result{Output: data, Files: []task.File{{Suffix: codecSuffix(j.codec), Data: compressed}}}, nil
}

// compressor returns the codec's writer. gzip gets a fixed header (no name, no
// modification time, OS unknown) so that its output is deterministic.
func (j *compressJob) compressor(w io.Writer) (io.WriteCloser, error) {
	var (
		cw  io.WriteCloser
		err error
	)
	switch j.codec {
	case CodecGzip:
		var zw *gzip.Writer
		if zw, err = gzip.NewWriterLevel(w, j.level); err == nil {
			zw.Header = gzip.Header{OS: 255}
			cw = zw
		}
	case CodecZlib:
		cw, err = zlib.NewWriterLevel(w, j.level)
	case CodecFlate:
		cw, err = flate.NewWriter(w, j.level)
	case CodecLZW:
		cw = lzw.NewWriter(w, lzw.LSB, 8)
	default:
		err = fmt.Errorf("unknown codec %q", j.codec)
	}
	if err != nil {
		return nil, fmt.Errorf("create %s writer: %w", j.codec, err)
	}
	return cw, nil
}

// compressErr reports cancellation as ctx.Err(), as Job.Run promises.
func compressErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("compress: %w", err)
}
