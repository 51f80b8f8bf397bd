package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"
	"time"
)

type convertResult struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Bytes  int    `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// checkConverted checks a convert result and decodes its file with the standard
// library decoder of the expected format.
func checkConverted(t *testing.T, res Result, from, to string, width, height int) image.Image {
	t.Helper()
	if len(res.Files) != 1 || res.Files[0].Suffix != to {
		t.Fatalf("files = %v, want one named %q", fileNames(res.Files), to)
	}
	data := res.Files[0].Data
	sum := sha256.Sum256(data)
	want := convertResult{From: from, To: to, Width: width, Height: height, Bytes: len(data), SHA256: hex.EncodeToString(sum[:])}
	if got := decode[convertResult](t, res); got != want {
		t.Errorf("output = %+v, want %+v", got, want)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || format != to || cfg.Width != width || cfg.Height != height {
		t.Errorf("file is a %dx%d %q (%v), want a %dx%d %s", cfg.Width, cfg.Height, format, err, width, height, to)
	}
	var img image.Image
	switch to {
	case FormatPNG:
		img, err = png.Decode(bytes.NewReader(data))
	case FormatJPEG:
		img, err = jpeg.Decode(bytes.NewReader(data))
	case FormatGIF:
		img, err = gif.Decode(bytes.NewReader(data))
	default:
		t.Fatalf("no decoder for %q", to)
	}
	if err != nil {
		t.Fatalf("decode %s: %v", to, err)
	}
	if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
		t.Fatalf("decoded image is %v, want %dx%d", b, width, height)
	}
	return img
}

// rgb8 returns the 8-bit channels of c.
func rgb8(c color.Color) [3]uint8 {
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return [3]uint8{n.R, n.G, n.B}
}

func near(a, b [3]uint8, tolerance int) bool {
	for i := range a {
		if d := int(a[i]) - int(b[i]); d > tolerance || d < -tolerance {
			return false
		}
	}
	return true
}

var (
	black = [3]uint8{0, 0, 0}
	white = [3]uint8{255, 255, 255}
)

func TestConvertGenerated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		to, pattern   string // pattern "" for the default, gradient
		width, height int
	}{
		{FormatPNG, "", 1, 1},
		{FormatPNG, PatternGradient, 37, 23},
		{FormatPNG, PatternChecker, 64, 48},
		{FormatJPEG, PatternGradient, 64, 64},
		{FormatJPEG, PatternChecker, 80, 64},
		{FormatGIF, PatternGradient, 50, 30},
		{FormatGIF, PatternChecker, 64, 64},
		{FormatGIF, "", 1, 300},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %s %dx%d", tc.to, tc.pattern, tc.width, tc.height), func(t *testing.T) {
			t.Parallel()
			gen := fmt.Sprintf(`"width":%d,"height":%d`, tc.width, tc.height)
			if tc.pattern != "" {
				gen += fmt.Sprintf(`,"pattern":%q`, tc.pattern)
			}
			res := run(t, NameConvert, fmt.Sprintf(`{"generate":{%s},"to":%q}`, gen, tc.to))
			img := checkConverted(t, res, FromGenerated, tc.to, tc.width, tc.height)
			w, h := tc.width, tc.height
			at := func(x, y int) [3]uint8 { return rgb8(img.At(x, y)) }
			tolerance := map[string]int{FormatPNG: 0, FormatJPEG: 24, FormatGIF: 25}[tc.to]
			want := map[[2]int][3]uint8{}
			if tc.pattern == PatternChecker {
				cell := min(w, h) / 8 // cells: white at the origin, alternating
				want[[2]int{0, 0}] = white
				want[[2]int{cell + cell/2, cell / 2}] = black
				want[[2]int{cell / 2, cell + cell/2}] = black
				want[[2]int{cell + cell/2, cell + cell/2}] = white
			} else {
				// The gradient: red grows left to right, green top to bottom, blue along both.
				want[[2]int{0, 0}] = black
				if w > 1 && h > 1 {
					want[[2]int{w - 1, 0}] = [3]uint8{255, 0, uint8((w - 1) * 255 / (w + h - 2))}
					want[[2]int{0, h - 1}] = [3]uint8{0, 255, uint8((h - 1) * 255 / (w + h - 2))}
					want[[2]int{w - 1, h - 1}] = white
				}
			}
			for p, c := range want {
				if got := at(p[0], p[1]); !near(got, c, tolerance) {
					t.Errorf("pixel %v = %v, want %v (± %d)", p, got, c, tolerance)
				}
			}
			if tc.to == FormatGIF {
				// Quantized to the web-safe palette: every channel a multiple of 0x33.
				for y := range h {
					for x := range w {
						if c := at(x, y); c[0]%0x33 != 0 || c[1]%0x33 != 0 || c[2]%0x33 != 0 {
							t.Fatalf("gif pixel (%d,%d) = %v is not web-safe", x, y, c)
						}
					}
				}
			}
		})
	}
}

// sourceImage is a smooth test image with a distinct color per pixel.
func sourceImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 255 / max(w-1, 1)), G: uint8(y * 255 / max(h-1, 1)), B: uint8((x + 2*y) * 255 / max(w+2*h-3, 1)), A: 255})
		}
	}
	return img
}

func encodeImage(t *testing.T, format string, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case FormatPNG:
		err = png.Encode(&buf, img)
	case FormatJPEG:
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95})
	case FormatGIF:
		// Nearest colors, not dithered: a smooth image stays smooth.
		err = gif.Encode(&buf, img, &gif.Options{NumColors: 256, Drawer: draw.Src})
	}
	if err != nil {
		t.Fatalf("encode test %s: %v", format, err)
	}
	return buf.Bytes()
}

func imagePayload(data []byte, rest string) string {
	return fmt.Sprintf(`{"image":%q,%s}`, base64.StdEncoding.EncodeToString(data), rest)
}

func TestConvertGivenImage(t *testing.T) {
	t.Parallel()
	const w, h = 30, 20
	src := sourceImage(w, h)
	for _, from := range []string{FormatPNG, FormatJPEG, FormatGIF} {
		input := encodeImage(t, from, src)
		// What the input holds, as the standard library decodes it.
		decoded, format, err := image.Decode(bytes.NewReader(input))
		if err != nil || format != from {
			t.Fatalf("decode test %s: %s, %v", from, format, err)
		}
		for _, to := range []string{FormatPNG, FormatJPEG, FormatGIF} {
			t.Run(from+" to "+to, func(t *testing.T) {
				t.Parallel()
				res := run(t, NameConvert, imagePayload(input, fmt.Sprintf(`"to":%q`, to)))
				out := checkConverted(t, res, from, to, w, h)
				exact := to == FormatPNG || (to == FormatGIF && from == FormatGIF) // lossless, or already paletted
				diff := 0                                                          // summed over all channels, for jpeg
				for y := range h {
					for x := range w {
						got, want := rgb8(out.At(x, y)), rgb8(decoded.At(x, y))
						switch {
						case exact && got != want:
							t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, got, want)
						case to == FormatGIF && !exact && !near(got, want, 25):
							t.Fatalf("gif pixel (%d,%d) = %v, want the nearest web-safe color to %v", x, y, got, want)
						}
						for i := range got {
							diff += max(int(got[i])-int(want[i]), int(want[i])-int(got[i]))
						}
					}
				}
				// JPEG is lossy, and more so on the bands of a gif: compare on average. A
				// wrong image (black, shifted, other size) is off by far more.
				if mean := float64(diff) / (3 * w * h); to == FormatJPEG && mean > 12 {
					t.Errorf("jpeg differs from its input by %.1f per channel on average", mean)
				}
			})
		}
	}
	t.Run("unpadded base64", func(t *testing.T) {
		t.Parallel()
		input := encodeImage(t, FormatPNG, sourceImage(5, 4)) // a length that base64 pads
		raw := base64.RawStdEncoding.EncodeToString(input)
		if raw == base64.StdEncoding.EncodeToString(input) {
			t.Fatal("test image needs no padding")
		}
		res := run(t, NameConvert, fmt.Sprintf(`{"image":%q,"to":"png"}`, raw))
		checkConverted(t, res, FormatPNG, FormatPNG, 5, 4)
	})
}

// TestConvertQuality checks that quality reaches the JPEG encoder and defaults to 90.
func TestConvertQuality(t *testing.T) {
	t.Parallel()
	gen := `"generate":{"width":128,"height":96}`
	size := func(quality string) Result {
		return run(t, NameConvert, fmt.Sprintf(`{%s,"to":"jpeg"%s}`, gen, quality))
	}
	low, high, def, ninety := size(`,"quality":10`), size(`,"quality":100`), size(``), size(`,"quality":90`)
	if len(low.Files[0].Data) >= len(high.Files[0].Data) {
		t.Errorf("quality 10 gave %d bytes, quality 100 %d: want fewer", len(low.Files[0].Data), len(high.Files[0].Data))
	}
	sameResult(t, def, ninety)
	for _, res := range []Result{low, high} {
		checkConverted(t, res, FromGenerated, FormatJPEG, 128, 96)
	}
}

func TestConvertDeterministic(t *testing.T) {
	t.Parallel()
	input := encodeImage(t, FormatPNG, sourceImage(40, 30))
	for _, payload := range []string{
		`{"generate":{"width":200,"height":150,"pattern":"gradient"},"to":"jpeg","quality":85}`,
		`{"generate":{"width":100,"height":100,"pattern":"checker"},"to":"png"}`,
		`{"generate":{"width":120,"height":80},"to":"gif"}`,
		imagePayload(input, `"to":"gif"`),
		imagePayload(input, `"to":"jpeg"`),
	} {
		t.Run(payload[:min(len(payload), 60)], func(t *testing.T) {
			t.Parallel()
			checkDeterministic(t, NameConvert, payload)
		})
	}
}

func TestConvertCommonFields(t *testing.T) {
	t.Parallel()
	checkCommonFields(t, NameConvert, `{"generate":{"width":8,"height":8},"to":"gif"}`,
		`{"forceFailure":99,"generate":{"width":8,"height":8},"timeLimitMs":59999,"to":"gif"}`,
		Options{ForceFailure: 99, TimeLimit: 59999 * time.Millisecond})
}

func TestConvertProblems(t *testing.T) {
	t.Parallel()
	png1 := base64.StdEncoding.EncodeToString(encodeImage(t, FormatPNG, sourceImage(3, 3)))
	wide := base64.StdEncoding.EncodeToString(encodeImage(t, FormatPNG, image.NewGray(image.Rect(0, 0, MaxImageSide+1, 1))))
	full := encodeImage(t, FormatPNG, sourceImage(16, 16))
	truncated := base64.StdEncoding.EncodeToString(full[:len(full)/2])
	text := base64.StdEncoding.EncodeToString([]byte("this is not an image"))
	runProblemCases(t, NameConvert, []problemCase{
		{"neither image nor generate", `{"to":"png"}`, "image", []string{"is required unless generate is given", "exactly one of image"}},
		{"both image and generate", `{"image":"` + png1 + `","generate":{"width":1,"height":1},"to":"png"}`, "generate", []string{"is not allowed together with image"}},
		{"missing to", `{"generate":{"width":1,"height":1}}`, "to", []string{`is required: must be one of "png", "jpeg", "gif"`}},
		{"to bad enum", `{"generate":{"width":1,"height":1},"to":"bmp"}`, "to", []string{`must be one of "png", "jpeg", "gif", got "bmp"`}},
		{"to jpg", `{"generate":{"width":1,"height":1},"to":"jpg"}`, "to", []string{`got "jpg"`}},
		{"to number", `{"generate":{"width":1,"height":1},"to":3}`, "to", []string{"got 3"}},
		{"quality with png", `{"generate":{"width":1,"height":1},"to":"png","quality":90}`, "quality", []string{`is only allowed when to is "jpeg", got to "png"`}},
		{"quality with gif", `{"generate":{"width":1,"height":1},"to":"gif","quality":1}`, "quality", []string{`got to "gif"`}},
		{"quality zero", `{"generate":{"width":1,"height":1},"to":"jpeg","quality":0}`, "quality", []string{"must be an integer between 1 and 100, got 0"}},
		{"quality too high", `{"generate":{"width":1,"height":1},"to":"jpeg","quality":101}`, "quality", []string{"got 101"}},
		{"quality string", `{"generate":{"width":1,"height":1},"to":"jpeg","quality":"high"}`, "quality", []string{`got "high"`}},
		{"generate not object", `{"generate":[1,1],"to":"png"}`, "generate", []string{"must be an object with fields width, height, pattern", "got an array"}},
		{"generate missing height", `{"generate":{"width":1},"to":"png"}`, "generate.height", []string{"is required: must be an integer between 1 and 4096"}},
		{"generate width zero", `{"generate":{"width":0,"height":1},"to":"png"}`, "generate.width", []string{"between 1 and 4096, got 0"}},
		{"generate width too large", `{"generate":{"width":4097,"height":1},"to":"png"}`, "generate.width", []string{"got 4097"}},
		{"generate height fraction", `{"generate":{"width":1,"height":1.5},"to":"png"}`, "generate.height", []string{"got 1.5"}},
		{"generate pattern bad enum", `{"generate":{"width":1,"height":1,"pattern":"stripes"},"to":"png"}`, "generate.pattern", []string{`must be one of "gradient", "checker", got "stripes"`}},
		{"generate unknown field", `{"generate":{"width":1,"height":1,"depth":8},"to":"png"}`, "generate.depth", []string{"allowed fields are: width, height, pattern"}},
		{"image number", `{"image":1,"to":"png"}`, "image", []string{"must be a string of at most 11184812 bytes, got 1"}},
		{"image not base64", `{"image":"!!!not base64!!!","to":"png"}`, "image", []string{"must be base64 (standard alphabet)"}},
		{"image url alphabet", `{"image":"` + strings.NewReplacer("+", "-", "/", "_").Replace(png1) + `_-","to":"png"}`, "image", []string{"must be base64"}},
		{"image not an image", `{"image":"` + text + `","to":"png"}`, "image", []string{"must be a PNG, JPEG or GIF image", "unknown format"}},
		{"image empty", `{"image":"","to":"png"}`, "image", []string{"must be a PNG, JPEG or GIF image"}},
		{"image too wide", `{"image":"` + wide + `","to":"png"}`, "image", []string{"must be between 1x1 and 4096x4096 pixels, got 4097x1"}},
		{"image truncated", `{"image":"` + truncated + `","to":"png"}`, "image", []string{"must be a valid png image"}},
		{"unknown field", `{"generate":{"width":1,"height":1},"to":"png","from":"png"}`, "from", []string{"is not an allowed field; allowed fields are: image, generate, to, quality, forceFailure, timeLimitMs"}},
	})
	t.Run("limits are inclusive", func(t *testing.T) {
		t.Parallel()
		prepare(t, NameConvert, `{"generate":{"width":4096,"height":4096,"pattern":"checker"},"to":"jpeg","quality":100}`)
		prepare(t, NameConvert, `{"generate":{"width":1,"height":1},"to":"jpeg","quality":1}`)
	})
}

func TestConvertCancel(t *testing.T) {
	t.Parallel()
	input := encodeImage(t, FormatJPEG, sourceImage(300, 200))
	for name, payload := range map[string]string{
		"while generating": `{"generate":{"width":1000,"height":1000},"to":"gif"}`,
		"while quantizing": imagePayload(input, `"to":"gif"`), // first report is after the input; quantizing checks next
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkCancelsMidway(t, NameConvert, payload)
		})
	}
	t.Run("while encoding", func(t *testing.T) {
		t.Parallel()
		// Cancelled at the report after the input (0.3), a png job still reports 0.6
		// before encoding, whose writes then fail. Run returns ctx.Err() itself, as Job
		// promises, not the encoder's error wrapping it.
		job, _ := prepare(t, NameConvert, imagePayload(input, `"to":"png"`))
		if err := cancelOnFirstProgress(t, job); err != context.Canceled {
			t.Errorf("Run cancelled before encoding = %v, want context.Canceled itself", err)
		}
	})
	t.Run("before start", func(t *testing.T) {
		t.Parallel()
		checkPreCancelled(t, NameConvert, `{"generate":{"width":100,"height":100},"to":"png"}`)
		checkPreCancelled(t, NameConvert, imagePayload(input, `"to":"jpeg"`))
	})
}
