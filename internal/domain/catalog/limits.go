package catalog

import "time"

// Task type names. Every built-in type is registered exactly once, by Builtins.
const (
	NamePrimes    = "primes"
	NameCompress  = "compress"
	NameConvert   = "convert"
	NameWordcount = "wordcount"
	NameHash      = "hash"
	NameSleep     = "sleep"
	NameNoop      = "noop"
)

// Default time limits of one attempt, per type. A payload may lower them with timeLimitMs.
const (
	PrimesTimeLimit    = 60 * time.Second
	CompressTimeLimit  = 60 * time.Second
	ConvertTimeLimit   = 60 * time.Second
	WordcountTimeLimit = 30 * time.Second
	HashTimeLimit      = 60 * time.Second
	SleepTimeLimit     = 60 * time.Second
	NoopTimeLimit      = 10 * time.Second
)

// Common payload fields, valid for every type and handled by Registry.Prepare.
const (
	FieldForceFailure = "forceFailure"
	FieldTimeLimitMs  = "timeLimitMs"
	ForceFailureMax   = 100
)

// Limits on a whole payload and on what a payload may report back.
const (
	// MaxPayloadBytes is the largest payload Registry.Prepare reads. It leaves room for
	// a base64 image of MaxImageBytes and for escapes in the 1 MiB text fields.
	MaxPayloadBytes = 16 << 20
	// MaxProblems is how many problems a ValidationError lists; the rest are counted.
	MaxProblems = 20
)

// primes limits.
const (
	PrimesLimitMin = 2
	PrimesLimitMax = 50_000_000
	PrimesListMax  = 100_000 // list is allowed only up to this limit
)

// compress limits.
const (
	CompressDataMaxBytes = 1 << 20
	CompressGenerateMax  = 64 << 20
	CompressLevelMin     = -1
	CompressLevelMax     = 9
	CompressLevelDefault = -1
	CompressCodecDefault = "gzip"
	CompressKindDefault  = "text"
)

// convert limits.
const (
	MaxImageBytes         = 8 << 20
	MaxImageSide          = 4096
	ConvertQualityMin     = 1
	ConvertQualityMax     = 100
	ConvertQualityDefault = 90
	ConvertPatternDefault = "gradient"
)

// wordcount limits.
const (
	WordcountTextMaxBytes = 1 << 20
	WordcountTopMin       = 1
	WordcountTopMax       = 100
	WordcountTopDefault   = 10
)

// hash limits.
const (
	HashDataMaxBytes      = 1 << 20
	HashIterationsMin     = 1
	HashIterationsMax     = 10_000_000
	HashIterationsDefault = 1000
	hashChunk             = 10_000 // iterations between ctx checks and progress reports
)

// sleep limits.
const (
	SleepMsMax = 600_000
)
