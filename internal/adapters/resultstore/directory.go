package resultstore

import (
	"errors"
	"fmt"
	"strings"
)

// Limits on a result directory name. The gateway enforces them with ValidateDirectory before
// queueing a task, and the Store enforces them again before every file system operation.
const (
	MaxDirectoryLen   = 200 // bytes, whole name
	MaxDirectoryDepth = 8   // segments
	MaxSegmentLen     = 64  // bytes, one segment
)

// ErrInvalidDirectory is matched (errors.Is) by every error ValidateDirectory returns.
var ErrInvalidDirectory = errors.New("invalid result directory")

// allowedDirectory is appended to most reasons, so that the user learns what to send instead.
const allowedDirectory = "allowed: up to 8 segments separated by single '/', each 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit"

// DirectoryError says why a result directory name was refused. Reason is meant for the user who
// submitted the task: it says what is wrong and what is allowed.
type DirectoryError struct {
	Directory string
	Reason    string
}

func (e *DirectoryError) Error() string {
	return fmt.Sprintf("invalid result directory %q: %s", truncate(e.Directory), e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidDirectory) true.
func (e *DirectoryError) Unwrap() error { return ErrInvalidDirectory }

// truncate keeps an attacker-sized name out of error messages and logs.
func truncate(s string) string {
	if len(s) <= MaxDirectoryLen {
		return s
	}
	return s[:MaxDirectoryLen] + "..."
}

// ValidateDirectory reports whether dir may name a result directory below the results root.
// A valid name is relative, clean and portable: it is non-empty, at most MaxDirectoryLen bytes of
// ASCII, made of at most MaxDirectoryDepth segments separated by single '/', and each segment
// matches [A-Za-z0-9][A-Za-z0-9._-]{0,63}. So "." , "..", hidden names, absolute paths, drive
// letters, backslashes, spaces, control characters and non-ASCII bytes are all refused.
// The error is a *DirectoryError.
func ValidateDirectory(dir string) error {
	reason := directoryProblem(dir)
	if reason == "" {
		return nil
	}
	return &DirectoryError{Directory: dir, Reason: reason}
}

// directoryProblem returns "" for a valid name, otherwise the reason it is invalid. Checks run
// from the most to the least fundamental, so that the reason names the real mistake.
func directoryProblem(dir string) string {
	switch {
	case dir == "":
		return "must not be empty; " + allowedDirectory
	case len(dir) > MaxDirectoryLen:
		return fmt.Sprintf("is %d bytes long; at most %d bytes are allowed", len(dir), MaxDirectoryLen)
	case dir[0] == '/':
		return "must be relative to the results root, not start with '/'; " + allowedDirectory
	case len(dir) >= 2 && isLetter(dir[0]) && dir[1] == ':':
		return fmt.Sprintf("must be relative to the results root; drive letters like %q are not allowed", dir[:2])
	}
	if reason := characterProblem(dir); reason != "" {
		return reason
	}
	if strings.HasSuffix(dir, "/") {
		return "must not end with '/'; " + allowedDirectory
	}
	segments := strings.Split(dir, "/")
	if len(segments) > MaxDirectoryDepth {
		return fmt.Sprintf("has %d segments; at most %d are allowed", len(segments), MaxDirectoryDepth)
	}
	for i, seg := range segments {
		if reason := segmentProblem(seg); reason != "" {
			return fmt.Sprintf("segment %d %s; %s", i+1, reason, allowedDirectory)
		}
	}
	return ""
}

// characterProblem checks every byte: only ASCII letters, digits, '.', '_', '-' and '/' pass.
func characterProblem(dir string) string {
	for i := 0; i < len(dir); i++ {
		c := dir[i]
		switch {
		case isSegmentByte(c) || c == '/':
			continue
		case c >= 0x80:
			return fmt.Sprintf("contains non-ASCII byte 0x%02x at offset %d; only ASCII is allowed; %s", c, i, allowedDirectory)
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("contains control character 0x%02x at offset %d; %s", c, i, allowedDirectory)
		case c == '\\':
			return fmt.Sprintf("contains '\\' at offset %d; separate segments with '/'; %s", i, allowedDirectory)
		default:
			return fmt.Sprintf("contains character %q at offset %d; %s", c, i, allowedDirectory)
		}
	}
	return ""
}

// segmentProblem checks one segment, whose bytes characterProblem has already checked.
func segmentProblem(seg string) string {
	switch {
	case seg == "":
		return "is empty (\"//\"); separate segments with a single '/'"
	case seg == "." || seg == "..":
		return fmt.Sprintf("is %q; relative path elements \".\" and \"..\" are not allowed", seg)
	case len(seg) > MaxSegmentLen:
		return fmt.Sprintf("is %d bytes long; at most %d bytes per segment are allowed", len(seg), MaxSegmentLen)
	case !isLetter(seg[0]) && !isDigit(seg[0]):
		return fmt.Sprintf("%q must start with a letter or digit (no hidden names, no leading '-')", seg)
	}
	return ""
}

func isLetter(c byte) bool      { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool       { return '0' <= c && c <= '9' }
func isSegmentByte(c byte) bool { return isLetter(c) || isDigit(c) || c == '.' || c == '_' || c == '-' }
