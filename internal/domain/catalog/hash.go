package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// AlgorithmSHA256 is the only algorithm of hash.
const AlgorithmSHA256 = "sha256"

type hashType struct{}

// Hash applies SHA-256 iteratively: h1 = sha256(data), h(i+1) = sha256(h(i)).
func Hash() Type { return hashType{} }

func (hashType) Spec() Spec {
	return Spec{
		Name: NameHash,
		Description: "Applies SHA-256 iterations times: the first to the data, each next one to the previous " +
			"32-byte digest. Returns the last digest in hex.",
		Fields:    hashFields(),
		Example:   json.RawMessage(`{"data":"hello","iterations":100000}`),
		TimeLimit: HashTimeLimit,
	}
}

func hashFields() []Field {
	return []Field{
		{Name: "data", Type: TypeString, Required: true, MaxBytes: HashDataMaxBytes, Description: "Data to hash (its UTF-8 bytes)."},
		{
			Name: "iterations", Type: TypeInteger, Default: HashIterationsDefault,
			Min: bound(HashIterationsMin), Max: bound(HashIterationsMax),
			Description: "How many times SHA-256 is applied.",
		},
	}
}

func (hashType) Prepare(payload json.RawMessage) (Job, error) {
	var p problems
	v := decodeObject("", payload, hashFields(), &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return &hashJob{data: []byte(v.str("data")), iterations: v.int("iterations")}, nil
}

type hashJob struct {
	data       []byte
	iterations int64
}

type hashOutput struct {
	Algorithm  string `json:"algorithm"`
	Iterations int64  `json:"iterations"`
	Hex        string `json:"hex"`
}

func (j *hashJob) Run(ctx context.Context, progress ProgressFunc) (Result, error) {
	pr := newProgress(progress)
	h := sha256.Sum256(j.data)
	for i := int64(1); i < j.iterations; i++ {
		if i%hashChunk == 0 {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
			pr.set(float64(i) / float64(j.iterations))
		}
		h = sha256.Sum256(h[:])
	}
	data, err := json.Marshal(hashOutput{Algorithm: AlgorithmSHA256, Iterations: j.iterations, Hex: hex.EncodeToString(h[:])})
	if err != nil {
		return Result{}, fmt.Errorf("encode hash output: %w", err)
	}
	pr.finish()
	return Result{Output: data}, nil
}
