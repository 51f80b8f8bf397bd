package catalog

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
)

// Kinds of generated compress input.
const (
	KindText   = "text"
	KindRandom = "random"
	KindZeros  = "zeros"
)

// generatorStream is the second PCG word, fixed so that a seed alone picks the stream.
const generatorStream = 0x7461736b67726964 // "taskgrid"

// generatorWords is the vocabulary of generated text.
const generatorWords = "the of and to in is that it was for on are with as his they be at one have " +
	"this from or had by word but what some we can out other were all there when up use your how said " +
	"an each she which do their time if will way about many then them write would like so these her long " +
	"make thing see him two has look more day could go come did number sound no most people my over"

// generator produces a deterministic byte stream from a seed: the same seed and kind
// give the same bytes however the stream is split into reads.
type generator struct {
	kind    string
	rng     *rand.Rand
	words   []string
	scratch []byte
	pending []byte // produced but not yet read
}

func newGenerator(kind string, seed int64) *generator {
	g := &generator{kind: kind, rng: rand.New(rand.NewPCG(uint64(seed), generatorStream))}
	if kind == KindText {
		g.words = strings.Fields(generatorWords)
	}
	return g
}

// fill fills p with the next len(p) bytes of the stream.
func (g *generator) fill(p []byte) {
	if g.kind == KindZeros {
		clear(p)
		return
	}
	for len(p) > 0 {
		if len(g.pending) == 0 {
			if g.kind == KindRandom && len(p) >= 8 {
				binary.LittleEndian.PutUint64(p, g.rng.Uint64())
				p = p[8:]
				continue
			}
			g.next()
		}
		n := copy(p, g.pending)
		p, g.pending = p[n:], g.pending[n:]
	}
}

// next produces the next token into pending: 8 random bytes, or a word and a separator.
func (g *generator) next() {
	if g.kind == KindRandom {
		g.scratch = binary.LittleEndian.AppendUint64(g.scratch[:0], g.rng.Uint64())
	} else {
		sep := byte(' ')
		if g.rng.IntN(12) == 0 {
			sep = '\n'
		}
		g.scratch = append(append(g.scratch[:0], g.words[g.rng.IntN(len(g.words))]...), sep)
	}
	g.pending = g.scratch
}
