package resultstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

type testBundle struct {
	root string // the results root, an absolute OS path
}

func setup(t *testing.T) (*Store, *testBundle) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "results")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, &testBundle{root: root}
}

// names lists the entries of a directory below the root, sorted.
func (b *testBundle) names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(b.root, filepath.FromSlash(dir)))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func (b *testBundle) readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.root, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (b *testBundle) writeFile(t *testing.T, name string, data string) {
	t.Helper()
	path := filepath.Join(b.root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func TestWriteRead(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	id := uuid.New()
	result := []byte(`{"answer":42}`)
	files := []task.File{{Suffix: "gz", Data: []byte{0x1f, 0x8b}}, {Suffix: "bin", Data: []byte("raw")}}

	loc, existed, err := s.Write(t.Context(), "reports/2026-11", id, result, files)
	if err != nil {
		t.Fatal(err)
	}
	if existed {
		t.Error("existed = true on the first write")
	}
	want := task.Location{
		Directory: "reports/2026-11",
		Path:      "reports/2026-11/" + id.String() + ".json",
		Files:     []string{"reports/2026-11/" + id.String() + ".bin", "reports/2026-11/" + id.String() + ".gz"},
		Bytes:     int64(len(result)),
		SHA256:    sha256Hex(result),
	}
	if !reflect.DeepEqual(loc, want) {
		t.Errorf("Write location = %+v, want %+v", loc, want)
	}

	got, err := s.Read("reports/2026-11", id)
	if err != nil || !bytes.Equal(got, result) {
		t.Errorf("Read = %q, %v; want %q", got, err, result)
	}
	if stat, err := s.Stat("reports/2026-11", id); err != nil || !reflect.DeepEqual(stat, want) {
		t.Errorf("Stat = %+v, %v; want %+v", stat, err, want)
	}
	if got := bundle.readFile(t, want.Files[1]); !bytes.Equal(got, files[0].Data) {
		t.Errorf("gz file = %q, want %q", got, files[0].Data)
	}
	// No temp or lock file is left behind.
	wantNames := []string{id.String() + ".bin", id.String() + ".gz", id.String() + ".json"}
	if got := bundle.names(t, "reports/2026-11"); !slices.Equal(got, wantNames) {
		t.Errorf("directory holds %q, want %q", got, wantNames)
	}
}

func TestWriteIsIdempotent(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	id := uuid.New()
	first, _, err := s.Write(t.Context(), "d", id, []byte(`{"n":1}`), nil)
	if err != nil {
		t.Fatal(err)
	}

	loc, existed, err := s.Write(t.Context(), "d", id, []byte(`{"n":2}`), []task.File{{Suffix: "gz", Data: []byte("late")}})
	if err != nil {
		t.Fatal(err)
	}
	if !existed {
		t.Error("existed = false on the second write")
	}
	if !reflect.DeepEqual(loc, first) {
		t.Errorf("second Write location = %+v, want the first's %+v", loc, first)
	}
	if got, _ := s.Read("d", id); string(got) != `{"n":1}` {
		t.Errorf("Read = %q, want the first write's content", got)
	}
	if got := bundle.names(t, "d"); !slices.Equal(got, []string{id.String() + ".json"}) {
		t.Errorf("directory holds %q, want only the first write's JSON", got)
	}
}

func TestWriteConcurrentFirstWins(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	id := uuid.New()
	const writers = 16
	type outcome struct {
		loc     task.Location
		existed bool
		err     error
	}
	outcomes := make([]outcome, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			result := fmt.Appendf(nil, `{"writer":%d}`, i)
			files := []task.File{{Suffix: "bin", Data: fmt.Appendf(nil, "writer %d", i)}}
			if i%2 == 0 { // half of the writers also bring a file the others don't
				files = append(files, task.File{Suffix: "gz", Data: []byte{byte(i)}})
			}
			loc, existed, err := s.Write(t.Context(), "race", id, result, files)
			outcomes[i] = outcome{loc, existed, err}
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, o := range outcomes {
		if o.err != nil {
			t.Fatalf("writer %d: %v", i, o.err)
		}
		if !o.existed {
			if winner >= 0 {
				t.Fatalf("writers %d and %d both won", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	want := fmt.Appendf(nil, `{"writer":%d}`, winner)
	if got := bundle.readFile(t, "race/"+id.String()+".json"); !bytes.Equal(got, want) {
		t.Errorf("stored JSON = %q, want the winner's %q", got, want)
	}
	if got := bundle.readFile(t, "race/"+id.String()+".bin"); string(got) != fmt.Sprintf("writer %d", winner) {
		t.Errorf("stored bin = %q, want writer %d's", got, winner)
	}
	wantNames := []string{id.String() + ".bin", id.String() + ".json"}
	if winner%2 == 0 {
		wantNames = []string{id.String() + ".bin", id.String() + ".gz", id.String() + ".json"}
	}
	if got := bundle.names(t, "race"); !slices.Equal(got, wantNames) {
		t.Errorf("directory holds %q, want %q", got, wantNames)
	}
	for i, o := range outcomes {
		if !reflect.DeepEqual(o.loc, outcomes[winner].loc) {
			t.Errorf("writer %d got location %+v, want the winner's %+v", i, o.loc, outcomes[winner].loc)
		}
	}
}

func TestWriteStaysInsideRoot(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target func(outside string) string // symlink target for root/evil
		dir    string
	}{
		{"absolute symlink as parent", func(outside string) string { return outside }, "evil/x"},
		{"absolute symlink as directory", func(outside string) string { return outside }, "evil"},
		{"relative symlink up as parent", func(string) string { return "../outside" }, "evil/x"},
		{"relative symlink up as directory", func(string) string { return "../outside" }, "evil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, bundle := setup(t)
			outside := filepath.Join(filepath.Dir(bundle.root), "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tt.target(outside), filepath.Join(bundle.root, "evil")); err != nil {
				t.Fatal(err)
			}
			id := uuid.New()

			_, _, err := s.Write(t.Context(), tt.dir, id, []byte(`{}`), []task.File{{Suffix: "gz", Data: []byte("x")}})
			if err == nil {
				t.Fatalf("Write(%q) through a symlink out of the root succeeded", tt.dir)
			}
			t.Logf("Write(%q): %v", tt.dir, err)
			// Write stops at its first look; the later steps refuse the symlink on their own, which
			// matters when the symlink is planted between two steps.
			if err := s.ensureDir(tt.dir); err == nil {
				t.Errorf("ensureDir(%q) through a symlink out of the root succeeded", tt.dir)
			}
			if _, err := s.writeTemp(tt.dir, id, "json", []byte(`{}`)); err == nil {
				t.Errorf("writeTemp(%q) through a symlink out of the root succeeded", tt.dir)
			}
			if err := s.syncDir(tt.dir); err == nil {
				t.Errorf("syncDir(%q) through a symlink out of the root succeeded", tt.dir)
			}
			if !strings.Contains(err.Error(), "write result "+id.String()) {
				t.Errorf("error %q lacks the write context", err)
			}
			if entries, err := os.ReadDir(outside); err != nil || len(entries) != 0 {
				t.Errorf("outside directory holds %v (err %v), want nothing", entries, err)
			}
			if _, err := s.Read(tt.dir, id); err == nil {
				t.Errorf("Read(%q) through a symlink out of the root succeeded", tt.dir)
			}
		})
	}
}

func TestWriteIgnoresLeftoversOfACrash(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	id := uuid.New()
	prefix := "d/" + id.String()
	bundle.writeFile(t, "d/."+id.String()+".json.tmp-STALE", `{"torn`)
	bundle.writeFile(t, "d/."+id.String()+".gz.tmp-STALE", "torn")
	bundle.writeFile(t, "d/."+id.String()+".lock", "")    // a lock file whose holder died
	bundle.writeFile(t, "d/."+id.String()+".partial", "") // marked before binaries go into place,
	bundle.writeFile(t, prefix+".gz", "old gz")           // renamed into place before the crash,
	bundle.writeFile(t, prefix+".bin", "old bin")         // but the JSON never was

	loc, existed, err := s.Write(t.Context(), "d", id, []byte(`{"ok":true}`), []task.File{{Suffix: "gz", Data: []byte("new gz")}})
	if err != nil {
		t.Fatal(err)
	}
	if existed {
		t.Error("existed = true, but only leftovers were there")
	}
	if want := []string{prefix + ".gz"}; !slices.Equal(loc.Files, want) {
		t.Errorf("Files = %q, want %q", loc.Files, want)
	}
	if got, _ := s.Read("d", id); string(got) != `{"ok":true}` {
		t.Errorf("Read = %q", got)
	}
	if got := bundle.readFile(t, prefix+".gz"); string(got) != "new gz" {
		t.Errorf("gz = %q, want the new content", got)
	}
	if _, err := os.Stat(filepath.Join(bundle.root, prefix+".bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover bin file not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(bundle.root, "d", "."+id.String()+".partial")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("marker of the crashed write not removed once the task is whole: %v", err)
	}
}

// A whole write leaves no marker, and writing to a directory that holds many results
// does not list it (the leftovers check looks for the task's marker only).
func TestWriteLeavesNoMarker(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	for _, files := range [][]task.File{nil, {{Suffix: "gz", Data: []byte("z")}}} {
		id := uuid.New()
		if _, _, err := s.Write(t.Context(), "d", id, []byte(`{}`), files); err != nil {
			t.Fatal(err)
		}
		for _, name := range bundle.names(t, "d") {
			if strings.HasSuffix(name, ".partial") {
				t.Errorf("marker %s left after a whole write with %d binary files", name, len(files))
			}
		}
	}
}

func TestWriteRemovesTempFilesOnFailure(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	id := uuid.New()
	// A directory where the gz file must go makes the rename fail after everything was staged.
	if err := os.MkdirAll(filepath.Join(bundle.root, "d", id.String()+".gz", "x"), 0o755); err != nil {
		t.Fatal(err)
	}

	_, _, err := s.Write(t.Context(), "d", id, []byte(`{}`), []task.File{{Suffix: "gz", Data: []byte("x")}})
	if err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	if got := bundle.names(t, "d"); !slices.Equal(got, []string{id.String() + ".gz"}) {
		t.Errorf("directory holds %q, want no temp, lock or JSON file", got)
	}
}

func TestWriteRefusesNonFileResult(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	id := uuid.New()
	if err := os.MkdirAll(filepath.Join(bundle.root, "d", id.String()+".json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, existed, err := s.Write(t.Context(), "d", id, []byte(`{}`), nil); err == nil || existed {
		t.Errorf("Write where <id>.json is a directory = existed %v, %v; want an error", existed, err)
	}
}

func TestWriteRecreatesRemovedDirectory(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	if _, _, err := s.Write(t.Context(), "old/2026-01", uuid.New(), []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(bundle.root, "old")); err != nil { // a retention job
		t.Fatal(err)
	}
	if _, _, err := s.Write(t.Context(), "old/2026-01", uuid.New(), []byte(`{}`), nil); err != nil {
		t.Fatalf("Write after the directory was removed: %v", err)
	}
}

func TestWriteInvalidInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		dir     string
		result  string
		files   []task.File
		wantErr error
		wantMsg string
	}{
		{"bad directory", "../x", `{}`, nil, ErrInvalidDirectory, `".."`},
		{"result not JSON", "d", `{"torn`, nil, ErrInvalidResult, "not valid JSON"},
		{"empty result", "d", ``, nil, ErrInvalidResult, "not valid JSON"},
		{"empty suffix", "d", `{}`, []task.File{{Suffix: ""}}, ErrInvalidFile, `suffix ""`},
		{"upper-case suffix", "d", `{}`, []task.File{{Suffix: "GZ"}}, ErrInvalidFile, "want 1 to 8 of a-z 0-9"},
		{"suffix too long", "d", `{}`, []task.File{{Suffix: "abcdefghi"}}, ErrInvalidFile, "want 1 to 8"},
		{"suffix with dot", "d", `{}`, []task.File{{Suffix: "tar.gz"}}, ErrInvalidFile, `suffix "tar.gz"`},
		{"suffix with slash", "d", `{}`, []task.File{{Suffix: "../x"}}, ErrInvalidFile, `suffix "../x"`},
		{"json suffix", "d", `{}`, []task.File{{Suffix: "json"}}, ErrInvalidFile, "reserved"},
		{"repeated suffix", "d", `{}`, []task.File{{Suffix: "gz"}, {Suffix: "bin"}, {Suffix: "gz"}}, ErrInvalidFile, "appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, bundle := setup(t)
			id := uuid.New()
			_, _, err := s.Write(t.Context(), tt.dir, id, []byte(tt.result), tt.files)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Write = %v, want %v", err, tt.wantErr)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "write result "+id.String()+": ") || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q, want the write context and %q", msg, tt.wantMsg)
			}
			if got := bundle.names(t, "."); len(got) != 0 {
				t.Errorf("root holds %q, want nothing written", got)
			}
		})
	}
}

func TestWriteCancelled(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	id := uuid.New()
	if _, _, err := s.Write(ctx, "d", id, []byte(`{}`), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write = %v, want context.Canceled", err)
	}
	if got := bundle.names(t, "."); len(got) != 0 {
		t.Errorf("root holds %q, want nothing", got)
	}
}

func TestReadMissing(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	id := uuid.New()
	if _, err := s.Read("nowhere", id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read = %v, want fs.ErrNotExist", err)
	}
	if _, err := s.Stat("nowhere", id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat = %v, want fs.ErrNotExist", err)
	}
	if _, err := s.Read("/etc", id); !errors.Is(err, ErrInvalidDirectory) {
		t.Errorf("Read(/etc) = %v, want ErrInvalidDirectory", err)
	}
	if _, err := s.Stat("a//b", id); !errors.Is(err, ErrInvalidDirectory) {
		t.Errorf("Stat(a//b) = %v, want ErrInvalidDirectory", err)
	}
}

// BenchmarkWrite writes one result into a directory that already holds n results: the
// cost must not grow with n (go test -bench Write ./internal/resultstore).
func BenchmarkWrite(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("dir-holds-%d", n), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "results"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			// Fill the directory directly: the files are what counts, not how they came.
			if _, _, err := s.Write(b.Context(), "d", uuid.New(), []byte(`{}`), nil); err != nil {
				b.Fatal(err)
			}
			for range n {
				if err := os.WriteFile(filepath.Join(s.root.Name(), "d", uuid.NewString()+".json"), []byte(`{}`), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if _, _, err := s.Write(b.Context(), "d", uuid.New(), []byte(`{"ok":true}`), []task.File{{Suffix: "gz", Data: []byte("z")}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A result without binary files is written without any other name in its directory (an
// unnamed file linked into place, where the file system has O_TMPFILE), readable as any
// other, and a second write of it changes nothing.
func TestWriteWithoutBinaryFilesLeavesOnlyTheResult(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	id := uuid.New()
	if _, existed, err := s.Write(t.Context(), "d", id, []byte(`{"n":1}`), nil); err != nil || existed {
		t.Fatalf("Write = existed %v, %v", existed, err)
	}
	if got := bundle.names(t, "d"); !slices.Equal(got, []string{id.String() + ".json"}) {
		t.Fatalf("directory holds %q, want only the result", got)
	}
	fi, err := os.Stat(filepath.Join(bundle.root, "d", id.String()+".json"))
	if err != nil || fi.Mode().Perm() != filePerm&^0o022 && fi.Mode().Perm() != filePerm {
		t.Fatalf("result file %v, %v: want mode %v", fi, err, os.FileMode(filePerm))
	}
	loc, existed, err := s.Write(t.Context(), "d", id, []byte(`{"n":2}`), nil)
	if err != nil || !existed || loc.SHA256 != sha256Hex([]byte(`{"n":1}`)) {
		t.Fatalf("second Write = %+v, existed %v, %v; want the first result kept", loc, existed, err)
	}
	if data, err := s.Read("d", id); err != nil || string(data) != `{"n":1}` {
		t.Fatalf("Read = %s, %v", data, err)
	}
}

// Forgetting a removed directory also drops its kept handle (and its parents'): the
// directory's next fsync must reach the one made again, not the removed one.
func TestForgetDirDropsKeptHandles(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	if _, _, err := s.Write(t.Context(), "a/b", uuid.New(), []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"a/b", "a"} {
		if _, err := s.dirHandle(dir); err != nil {
			t.Fatal(err)
		}
	}
	s.forgetDir("a/b")
	for _, dir := range []string{"a/b", "a"} {
		if _, ok := s.cachedDir(dir); ok {
			t.Errorf("handle of %s kept after forgetDir", dir)
		}
	}
}
