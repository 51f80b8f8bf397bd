package resultstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// validDirectory is the rule of ValidateDirectory written as a regular expression, as an oracle.
var validDirectory = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,7}$`)

func TestValidateDirectory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		dir        string
		wantReason string // "" means valid
	}{
		{"single segment", "a", ""},
		{"two segments", "reports/2026-11", ""},
		{"dot underscore dash", "x_y.z-1", ""},
		{"dots inside a segment", "a..b/v1.2", ""},
		{"max depth", "a/b/c/d/e/f/g/h", ""},
		{"max segment length", strings.Repeat("s", MaxSegmentLen), ""},
		{"max length", strings.Repeat(strings.Repeat("s", 49)+"/", 4)[:MaxDirectoryLen-1] + "z", ""},

		{"empty", "", "must not be empty"},
		{"absolute", "/abs", "must be relative to the results root, not start with '/'"},
		{"parent first", "../x", `segment 1 is ".."; relative path elements "." and ".." are not allowed`},
		{"parent inside", "a/../b", `segment 2 is ".."; relative path elements`},
		{"parent last", "a/..", `segment 2 is ".."`},
		{"current inside", "a/./b", `segment 2 is "."`},
		{"double slash", "a//b", `segment 2 is empty ("//"); separate segments with a single '/'`},
		{"trailing slash", "a/", "must not end with '/'"},
		{"dot", ".", `segment 1 is "."`},
		{"dot dot", "..", `segment 1 is ".."`},
		{"hidden", ".hidden", `segment 1 ".hidden" must start with a letter or digit`},
		{"hidden inside", "a/.git", `segment 2 ".git" must start with a letter or digit`},
		{"leading dash", "-dash", `segment 1 "-dash" must start with a letter or digit`},
		{"leading underscore", "_x", "must start with a letter or digit"},
		{"backslash", `a\b`, `contains '\' at offset 1; separate segments with '/'`},
		{"drive letter", "c:x", `drive letters like "c:" are not allowed`},
		{"drive letter only", "C:", "drive letters"},
		{"colon", "ab:c", `contains character ':' at offset 2`},
		{"space", "with space", `contains character ' ' at offset 4`},
		{"non-ASCII", "ü", "contains non-ASCII byte 0xc3 at offset 0; only ASCII is allowed"},
		{"invalid UTF-8", "a\xffb", "non-ASCII byte 0xff at offset 1"},
		{"NUL", "a\x00b", "contains control character 0x00 at offset 1"},
		{"newline", "a\nb", "control character 0x0a"},
		{"DEL", "a\x7f", "control character 0x7f"},
		{"too long", strings.Repeat("a", MaxDirectoryLen+1), "is 201 bytes long; at most 200 bytes are allowed"},
		{"too deep", "a/b/c/d/e/f/g/h/i", "has 9 segments; at most 8 are allowed"},
		{"segment too long", "ok/" + strings.Repeat("a", MaxSegmentLen+1), "segment 2 is 65 bytes long; at most 64 bytes per segment are allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateDirectory(tt.dir)
			if want := len(tt.dir) <= MaxDirectoryLen && validDirectory.MatchString(tt.dir); (err == nil) != want {
				t.Errorf("ValidateDirectory(%q) = %v, but the oracle says valid=%v", tt.dir, err, want)
			}
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("ValidateDirectory(%q) = %v, want nil", tt.dir, err)
				}
				return
			}
			var dirErr *DirectoryError
			if !errors.As(err, &dirErr) {
				t.Fatalf("ValidateDirectory(%q) = %v, want a *DirectoryError", tt.dir, err)
			}
			if !errors.Is(err, ErrInvalidDirectory) {
				t.Errorf("errors.Is(%v, ErrInvalidDirectory) = false", err)
			}
			if dirErr.Directory != tt.dir {
				t.Errorf("Directory = %q, want %q", dirErr.Directory, tt.dir)
			}
			if !strings.Contains(err.Error(), tt.wantReason) {
				t.Errorf("error %q does not mention %q", err, tt.wantReason)
			}
			if !strings.Contains(err.Error(), "allowed") {
				t.Errorf("error %q does not say what is allowed", err)
			}
		})
	}
}

func TestDirectoryErrorTruncatesLongNames(t *testing.T) {
	t.Parallel()
	err := ValidateDirectory(strings.Repeat("x", 10_000))
	if n := len(err.Error()); n > 2*MaxDirectoryLen {
		t.Errorf("error message is %d bytes long, want it truncated", n)
	}
}

func ExampleValidateDirectory() {
	for _, dir := range []string{"reports/2026-11", "../etc", "with space"} {
		fmt.Println(ValidateDirectory(dir))
	}
	// Output:
	// <nil>
	// invalid result directory "../etc": segment 1 is ".."; relative path elements "." and ".." are not allowed; allowed: up to 8 segments separated by single '/', each 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit
	// invalid result directory "with space": contains character ' ' at offset 4; allowed: up to 8 segments separated by single '/', each 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit
}

func FuzzValidateDirectory(f *testing.F) {
	for _, seed := range []string{
		"a", "reports/2026-11", "x_y.z-1", "", "/abs", "../x", "a/../b", "a//b", "a/", ".", "..",
		".hidden", "-dash", `a\b`, "c:x", "with space", "ü", "a\x00b", "a/b/c/d/e/f/g/h/i",
		strings.Repeat("a", MaxSegmentLen+1), "a..b", "A/b.c/D-e_f",
	} {
		f.Add(seed)
	}
	// The accepted directories are written into a store that starts afresh every 500 of
	// them: one store for a whole fuzzing run grew to thousands of directories, which a
	// fuzz worker stopped at the end of -fuzztime did not always finish removing, and they
	// stayed in $TMPDIR. (A store per input fuzzed a third as fast.)
	base := f.TempDir()
	var s *Store
	var root string
	written := 0
	f.Cleanup(func() {
		if s != nil {
			s.Close()
		}
	})
	fresh := func(t *testing.T) {
		if s != nil {
			s.Close()
			if err := os.RemoveAll(root); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if root, err = os.MkdirTemp(base, "store"); err != nil {
			t.Fatal(err)
		}
		if s, err = Open(root); err != nil {
			t.Fatal(err)
		}
	}

	f.Fuzz(func(t *testing.T, dir string) {
		err := ValidateDirectory(dir)
		if want := len(dir) <= MaxDirectoryLen && validDirectory.MatchString(dir); (err == nil) != want {
			t.Fatalf("ValidateDirectory(%q) = %v, but the oracle says valid=%v", dir, err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidDirectory) {
				t.Fatalf("ValidateDirectory(%q) = %v, does not match ErrInvalidDirectory", dir, err)
			}
			return
		}
		if filepath.Clean(dir) != dir || !filepath.IsLocal(dir) {
			t.Fatalf("accepted %q, which is not clean and local", dir)
		}
		if written%500 == 0 {
			fresh(t)
		}
		written++
		if joined := filepath.Join(root, dir); !strings.HasPrefix(joined, root+string(filepath.Separator)) {
			t.Fatalf("accepted %q, which joins to %q outside %q", dir, joined, root)
		}
		if _, _, err := s.Write(t.Context(), dir, uuid.New(), []byte(`{}`), nil); err != nil {
			t.Fatalf("accepted %q, but Write failed: %v", dir, err)
		}
	})
}
