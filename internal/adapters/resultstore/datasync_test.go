package resultstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/platform/batch"
)

func TestSyncPlan(t *testing.T) {
	t.Parallel()
	f := func(seqs ...uint64) []openFile {
		out := make([]openFile, len(seqs))
		for i, s := range seqs {
			out[i] = openFile{seq: s}
		}
		return out
	}
	for _, tt := range []struct {
		name  string
		files []openFile
		devs  []uint64
		want  []syncDevice
	}{
		{"one file", f(7), []uint64{1}, []syncDevice{{dev: 1, via: 0}}},
		{"one file system: the file opened first, wherever it is in the batch", f(9, 4, 6), []uint64{1, 1, 1}, []syncDevice{{dev: 1, via: 1}}},
		{"in order of opening", f(3, 4, 5), []uint64{2, 2, 2}, []syncDevice{{dev: 2, via: 0}}},
		{"two file systems: one sync each, through its own first", f(8, 5, 2, 9, 3), []uint64{1, 2, 2, 1, 1}, []syncDevice{{dev: 1, via: 4}, {dev: 2, via: 2}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := syncPlan(tt.files, tt.devs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("syncPlan = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestSyncFiles syncs batches of real files: one file (fsync), many (syncfs on Linux), and
// a batch with a closed file in it, which must fail rather than report the others durable.
func TestSyncFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	create := func(n int) []openFile {
		out := make([]openFile, n)
		for i := range out {
			f, err := os.Create(filepath.Join(dir, fmt.Sprint(uuid.New())))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			out[i] = s.open(f)
			if _, err := f.WriteString(`{"ok":true}`); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	for _, n := range []int{1, 5} {
		if err := s.syncFiles(t.Context(), create(n)); err != nil {
			t.Errorf("sync of %d files: %v", n, err)
		}
	}
	for _, n := range []int{1, 5} {
		batch := create(n)
		batch[n-1].f.Close()
		if err := s.syncFiles(t.Context(), batch); err == nil {
			t.Errorf("sync of %d files, one of them closed: no error", n)
		}
	}
}

// TestConcurrentWritesShareSyncs writes results from many goroutines at once: each is
// stored whole, and the writers waiting together share syncs (fewer calls than files).
func TestConcurrentWritesShareSyncs(t *testing.T) {
	t.Parallel()
	s, bundle := setup(t)
	var calls, files atomic.Int64
	s.dataSyncs = batch.New(context.Background(), 0, func(ctx context.Context, fs []openFile) error {
		calls.Add(1)
		files.Add(int64(len(fs)))
		return s.syncFiles(ctx, fs)
	})
	const writers = 64
	ids := make([]uuid.UUID, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range ids {
		ids[i] = uuid.New()
		wg.Go(func() {
			<-start
			if _, _, err := s.Write(t.Context(), "many", ids[i], fmt.Appendf(nil, `{"n":%d}`, i), nil); err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	for i, id := range ids {
		if got, want := string(bundle.readFile(t, "many/"+id.String()+".json")), fmt.Sprintf(`{"n":%d}`, i); got != want {
			t.Errorf("result %d = %q, want %q", i, got, want)
		}
	}
	if files.Load() != writers || calls.Load() >= writers {
		t.Errorf("%d files synced in %d calls, want %d files in fewer calls", files.Load(), calls.Load(), writers)
	}
}
