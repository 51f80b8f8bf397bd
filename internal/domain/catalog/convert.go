package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"slices"
	"strings"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// Image formats convert reads and writes (registered with package image by these
// imports), and the patterns it generates.
const (
	FormatPNG       = "png"
	FormatJPEG      = "jpeg"
	FormatGIF       = "gif"
	FromGenerated   = "generated" // the "from" of a generated image
	PatternGradient = "gradient"
	PatternChecker  = "checker"
)

// convertBands is how many bands of rows an image is built or quantized in, with a
// ctx check and a progress report after each.
const convertBands = 40

// Progress reached after each phase of a conversion.
const (
	convertBuiltAt     = 0.3
	convertQuantizedAt = 0.6
)

type convertType struct{}

// Convert re-encodes a given or generated image as PNG, JPEG or GIF.
func Convert() Type { return convertType{} }

func (convertType) Spec() Spec {
	return Spec{
		Name:        NameConvert,
		Description: "Converts an image (given as base64, or generated) to PNG, JPEG or GIF.",
		Fields:      convertFields(),
		Example:     json.RawMessage(`{"generate":{"width":640,"height":480,"pattern":"gradient"},"to":"jpeg","quality":85}`),
		TimeLimit:   ConvertTimeLimit,
	}
}

func convertFields() []Field {
	side := func(name string) Field {
		return Field{
			Name: name, Type: TypeInteger, Required: true,
			Min: bound(1), Max: bound(MaxImageSide), Description: "Image " + name + " in pixels.",
		}
	}
	return []Field{
		{
			Name: "image", Type: TypeString, MaxBytes: base64.StdEncoding.EncodedLen(MaxImageBytes),
			Description: fmt.Sprintf("Base64 (standard alphabet) of a PNG, JPEG or GIF of at most %d bytes and %dx%d pixels. "+
				"Exactly one of image and generate.", MaxImageBytes, MaxImageSide, MaxImageSide),
		},
		{
			Name: "generate", Type: TypeObject,
			Description: "Generate the image instead. Exactly one of image and generate.",
			Fields: []Field{
				side("width"),
				side("height"),
				{
					Name: "pattern", Type: TypeString, Default: ConvertPatternDefault,
					Enum: []string{PatternGradient, PatternChecker}, Description: "What to draw.",
				},
			},
		},
		{
			Name: "to", Type: TypeString, Required: true,
			Enum: []string{FormatPNG, FormatJPEG, FormatGIF}, Description: "Output format.",
		},
		{
			Name: "quality", Type: TypeInteger, Default: ConvertQualityDefault,
			Min: bound(ConvertQualityMin), Max: bound(ConvertQualityMax),
			Description: "JPEG quality; allowed only when to is jpeg.",
		},
	}
}

func (convertType) Prepare(payload json.RawMessage) (Job, error) {
	var p problems
	v := decodeObject("", payload, convertFields(), &p)
	job := &convertJob{to: v.str("to"), quality: int(v.int("quality"))}
	switch {
	case v.sentField("image") && v.sentField("generate"):
		p.add("generate", "is not allowed together with image: send exactly one of image and generate")
	case !v.sentField("image") && !v.sentField("generate"):
		p.add("image", "is required unless generate is given: send exactly one of image (base64 of a PNG, JPEG or GIF) and generate (%s)",
			describe(convertFields()[1]))
	case v.has("image"):
		job.img, job.from = decodeImage(v.str("image"), &p)
	case v.has("generate"):
		gen := v.object("generate")
		job.from, job.width, job.height, job.pattern = FromGenerated, int(gen.int("width")), int(gen.int("height")), gen.str("pattern")
	}
	if v.has("to") && job.to != FormatJPEG && v.sentField("quality") {
		p.add("quality", "is only allowed when to is %q, got to %q", FormatJPEG, job.to)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return job, nil
}

// decodeImage decodes a base64 PNG, JPEG or GIF, adding a problem on field image when
// it is not one or is too large.
func decodeImage(s string, p *problems) (image.Image, string) {
	const field = "image"
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		data, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	if err != nil {
		p.add(field, "must be base64 (standard alphabet) of a PNG, JPEG or GIF image: %v", err)
		return nil, ""
	}
	if len(data) > MaxImageBytes {
		p.add(field, "must decode to at most %d bytes, got %d", MaxImageBytes, len(data))
		return nil, ""
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		p.add(field, "must be a PNG, JPEG or GIF image: %v", err)
		return nil, ""
	}
	if !slices.Contains([]string{FormatPNG, FormatJPEG, FormatGIF}, format) {
		p.add(field, "must be a PNG, JPEG or GIF image, got %s", format)
		return nil, ""
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxImageSide || cfg.Height > MaxImageSide {
		p.add(field, "must be between 1x1 and %dx%d pixels, got %dx%d", MaxImageSide, MaxImageSide, cfg.Width, cfg.Height)
		return nil, ""
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		p.add(field, "must be a valid %s image: %v", format, err)
		return nil, ""
	}
	return img, format
}

type convertJob struct {
	from, to string
	quality  int
	img      image.Image // the decoded input, unless generated
	width    int         // of the generated image
	height   int
	pattern  string
}

type convertOutput struct {
	From   string `json:"from"` // png, jpeg, gif or generated
	To     string `json:"to"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Bytes  int    `json:"bytes"`
	SHA256 string `json:"sha256"`
}

func (j *convertJob) Run(ctx context.Context, progress ProgressFunc) (Result, error) {
	pr := newProgress(progress)
	img := j.img
	if img == nil {
		var err error
		if img, err = generateImage(ctx, j.width, j.height, j.pattern, pr); err != nil {
			return Result{}, err
		}
	}
	pr.set(convertBuiltAt)
	if _, ok := img.(*image.Paletted); j.to == FormatGIF && !ok {
		var err error
		if img, err = quantize(ctx, img, pr); err != nil {
			return Result{}, err
		}
	}
	pr.set(convertQuantizedAt)
	w := &ctxWriter{ctx: ctx}
	if err := j.encode(w, img); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Result{}, ctxErr
		}
		return Result{}, fmt.Errorf("encode %s: %w", j.to, err)
	}
	sum := sha256.Sum256(w.buf)
	b := img.Bounds()
	data, err := json.Marshal(convertOutput{
		From: j.from, To: j.to, Width: b.Dx(), Height: b.Dy(), Bytes: len(w.buf), SHA256: hex.EncodeToString(sum[:]),
	})
	if err != nil {
		return Result{}, fmt.Errorf("encode convert output: %w", err)
	}
	pr.finish()
	return Result{Output: data, Files: []task.File{{Suffix: j.to, Data: w.buf}}}, nil
}

func (j *convertJob) encode(w *ctxWriter, img image.Image) error {
	switch j.to {
	case FormatPNG:
		return png.Encode(w, img)
	case FormatJPEG:
		return jpeg.Encode(w, img, &jpeg.Options{Quality: j.quality})
	case FormatGIF:
		return gif.Encode(w, img, nil)
	}
	return fmt.Errorf("unknown format %q", j.to)
}

// generateImage draws a pattern, in bands of rows.
func generateImage(ctx context.Context, w, h int, pattern string, pr *progressReporter) (*image.RGBA, error) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	cell := max(1, min(w, h)/8)
	band := max(1, h/convertBands)
	for y := range h {
		if y%band == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			pr.set(convertBuiltAt * float64(y) / float64(h))
		}
		row := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for x := range w {
			px := row[4*x : 4*x+4]
			if pattern == PatternChecker {
				v := byte(0)
				if (x/cell+y/cell)%2 == 0 {
					v = 255
				}
				px[0], px[1], px[2] = v, v, v
			} else {
				px[0], px[1], px[2] = scale(x, w), scale(y, h), scale(x+y, w+h-1)
			}
			px[3] = 255
		}
	}
	return img, nil
}

// scale maps i in [0,n) onto [0,255].
func scale(i, n int) byte {
	if n <= 1 {
		return 0
	}
	return byte(i * 255 / (n - 1))
}

// quantize maps img onto the web-safe palette (6 levels per channel), nearest color
// without dithering: computed per pixel, deterministic, and interruptible between bands.
func quantize(ctx context.Context, img image.Image, pr *progressReporter) (*image.Paletted, error) {
	b := img.Bounds()
	out := image.NewPaletted(b, palette.WebSafe)
	rgba, isRGBA := img.(*image.RGBA)
	if !isRGBA {
		rgba = image.NewRGBA(b)
	}
	band := max(1, b.Dy()/convertBands)
	for y0 := b.Min.Y; y0 < b.Max.Y; y0 += band {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pr.set(convertBuiltAt + (convertQuantizedAt-convertBuiltAt)*float64(y0-b.Min.Y)/float64(b.Dy()))
		rows := image.Rect(b.Min.X, y0, b.Max.X, min(y0+band, b.Max.Y))
		if !isRGBA {
			draw.Draw(rgba, rows, img, rows.Min, draw.Src)
		}
		for y := rows.Min.Y; y < rows.Max.Y; y++ {
			src := rgba.Pix[rgba.PixOffset(b.Min.X, y):]
			dst := out.Pix[out.PixOffset(b.Min.X, y):]
			for x := range b.Dx() {
				px := src[4*x : 4*x+3]
				dst[x] = webSafeIndex(px[0])*36 + webSafeIndex(px[1])*6 + webSafeIndex(px[2])
			}
		}
	}
	return out, nil
}

// webSafeIndex is the index of the nearest of the 6 web-safe levels (0x00, 0x33, ... 0xff)
// to a channel value. palette.WebSafe lists red-major, then green, then blue.
func webSafeIndex(c uint8) uint8 { return uint8((uint16(c) + 25) / 51) }
