//go:build linux

package resultstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSyncFilesWhenSyncfsFails: a syncfs refused by the system (as a sandbox that filters
// system calls would) makes the Store fsync each file, then and from then on; a syncfs that
// reports a write-back error fails the batch. Not parallel: it replaces syncfs.
func TestSyncFilesWhenSyncfsFails(t *testing.T) {
	defer func(f func(int) error) { syncfs = f }(syncfs)
	for _, tt := range []struct {
		name          string
		err           error
		wantErr       bool
		wantFallback  bool
		wantCallsNext int // syncfs calls made by a second batch
	}{
		{"refused: fsync each, from then on", unix.ENOSYS, false, true, 0},
		{"not permitted: fsync each, from then on", unix.EPERM, false, true, 0},
		{"a write-back error: the batch fails", unix.EIO, true, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			calls, files := 0, 0
			syncfs = func(int) error { calls++; return tt.err }
			batch := func() []openFile {
				var out []openFile
				for range 3 {
					files++
					f, err := os.Create(filepath.Join(dir, fmt.Sprint(files)))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { f.Close() })
					out = append(out, s.open(f))
				}
				return out
			}
			err = s.syncFiles(t.Context(), batch())
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, tt.err)) {
				t.Fatalf("syncFiles = %v, want error %v", err, tt.wantErr)
			}
			if calls != 1 || s.noSyncfs.Load() != tt.wantFallback {
				t.Fatalf("%d syncfs calls, fallback %v; want 1, %v", calls, s.noSyncfs.Load(), tt.wantFallback)
			}
			calls = 0
			_ = s.syncFiles(t.Context(), batch())
			if calls != tt.wantCallsNext {
				t.Errorf("the next batch made %d syncfs calls, want %d", calls, tt.wantCallsNext)
			}
		})
	}
}
