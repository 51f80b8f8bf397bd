//go:build linux

package resultstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// TestWriteManySyncsOnceBeforeAnyLink: results without binary files are made durable by
// one sync for the whole batch, and none is in place before it: a result's name appears
// only after the sync that covers its data. Each then reads back as written, at the
// location Write gives. Not parallel: it replaces syncfs.
func TestWriteManySyncsOnceBeforeAnyLink(t *testing.T) {
	defer func(f func(int) error) { syncfs = f }(syncfs)
	s, b := setup(t)
	var rs []Result
	for i := range 10 {
		dir := "many/a"
		if i%2 == 1 {
			dir = "many/b"
		}
		rs = append(rs, Result{Dir: dir, ID: uuid.New(), Data: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	calls := 0
	syncfs = func(int) error {
		calls++
		for _, r := range rs {
			name := filepath.Join(b.root, r.Dir, r.ID.String()+".json")
			if _, err := os.Stat(name); err == nil {
				t.Errorf("%s is in place before the sync of its data", name)
			}
		}
		return nil
	}
	out := s.WriteMany(context.Background(), rs, 4)
	if calls != 1 {
		t.Errorf("%d syncfs calls for a batch of %d, want 1", calls, len(rs))
	}
	for i, w := range out {
		r := rs[i]
		if w.Err != nil || w.Existed {
			t.Fatalf("result %d: existed %v, error %v", i, w.Existed, w.Err)
		}
		want := task.Location{Directory: r.Dir, Path: r.Dir + "/" + r.ID.String() + ".json", Bytes: int64(len(r.Data)), SHA256: sha256Hex(r.Data)}
		if !locationsEqual(w.Loc, want) {
			t.Errorf("result %d at %+v, want %+v", i, w.Loc, want)
		}
		if got := b.readFile(t, want.Path); string(got) != string(r.Data) {
			t.Errorf("result %d reads %q, want %q", i, got, r.Data)
		}
		if stat, err := s.Stat(r.Dir, r.ID); err != nil || !locationsEqual(stat, want) {
			t.Errorf("result %d: Stat gives %+v, %v; want %+v", i, stat, err, want)
		}
	}
	for _, dir := range []string{"many/a", "many/b"} {
		if names := b.names(t, dir); len(names) != 5 {
			t.Errorf("%s holds %v, want the 5 results and nothing else", dir, names)
		}
	}
}

// TestWriteManyCommitsInParts: a batch larger than unnamedBatchMax holds no more files
// open than that; it is synced in parts, and every result is stored. Not parallel: it
// replaces syncfs.
func TestWriteManyCommitsInParts(t *testing.T) {
	defer func(f func(int) error) { syncfs = f }(syncfs)
	s, b := setup(t)
	calls := 0
	syncfs = func(int) error { calls++; return nil }
	rs := make([]Result, unnamedBatchMax+10)
	for i := range rs {
		rs[i] = Result{Dir: "parts", ID: uuid.New(), Data: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	for i, w := range s.WriteMany(context.Background(), rs, 4) {
		if w.Err != nil || w.Existed {
			t.Fatalf("result %d: existed %v, error %v", i, w.Existed, w.Err)
		}
	}
	if calls != 2 {
		t.Errorf("%d syncs for %d results, want 2 (parts of %d)", calls, len(rs), unnamedBatchMax)
	}
	if names := b.names(t, "parts"); len(names) != len(rs) {
		t.Errorf("%d results in place, want %d", len(names), len(rs))
	}
}

// TestFoundResultsWaitForTheirDirectorysSync: a result found in place (its task's result
// came twice) is answered only after its directory is synced, since the writer that linked
// it may not have synced it yet: by WriteMany, and by Write the unnamed way and the named
// way (a result with a binary file). Not parallel: it replaces dirSync.
func TestFoundResultsWaitForTheirDirectorysSync(t *testing.T) {
	defer func(f func(*os.File) error) { dirSync = f }(dirSync)
	ctx := context.Background()
	cases := []struct {
		name  string
		files []task.File
		again func(s *Store, id uuid.UUID, files []task.File) (bool, error)
	}{
		{"WriteMany", nil, func(s *Store, id uuid.UUID, files []task.File) (bool, error) {
			w := s.WriteMany(ctx, []Result{{Dir: "found", ID: id, Data: []byte(`{"second":true}`), Files: files}}, 1)[0]
			return w.Existed, w.Err
		}},
		{"Write", nil, func(s *Store, id uuid.UUID, files []task.File) (bool, error) {
			_, existed, err := s.Write(ctx, "found", id, []byte(`{"second":true}`), files)
			return existed, err
		}},
		{"Write with a binary file", []task.File{{Suffix: "png", Data: []byte("PNG")}}, func(s *Store, id uuid.UUID, files []task.File) (bool, error) {
			_, existed, err := s.Write(ctx, "found", id, []byte(`{"second":true}`), files)
			return existed, err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dirSync = (*os.File).Sync
			s, _ := setup(t)
			id := uuid.New()
			if _, _, err := s.Write(ctx, "found", id, []byte(`{"first":true}`), tc.files); err != nil {
				t.Fatal(err)
			}
			syncs := 0
			dirSync = func(d *os.File) error { syncs++; return d.Sync() }
			existed, err := tc.again(s, id, tc.files)
			if err != nil || !existed {
				t.Fatalf("existed %v, error %v; want found", existed, err)
			}
			if syncs == 0 {
				t.Error("a found result was answered without a sync of its directory")
			}
		})
	}
}

// TestWriteManyAnswersEachAsWriteWould: in one batch, invalid results are refused with
// Write's errors and nothing else is held back by them; a result with binary files goes
// through Write; one stored before, and a task listed twice, are found (the first write
// wins); the answers come in the batch's order.
func TestWriteManyAnswersEachAsWriteWould(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	before := uuid.New()
	if _, _, err := s.Write(ctx, "mixed", before, []byte(`{"first":true}`), nil); err != nil {
		t.Fatal(err)
	}
	twice := uuid.New()
	rs := []Result{
		{Dir: "mixed", ID: uuid.New(), Data: []byte(`{"a":1}`)},
		{Dir: "../out", ID: uuid.New(), Data: []byte(`{}`)},
		{Dir: "mixed", ID: uuid.New(), Data: []byte(`not json`)},
		{Dir: "mixed", ID: uuid.New(), Data: []byte(`{"png":true}`), Files: []task.File{{Suffix: "png", Data: []byte("PNG")}}},
		{Dir: "mixed", ID: before, Data: []byte(`{"second":true}`)},
		{Dir: "mixed", ID: twice, Data: []byte(`{"take":1}`)},
		{Dir: "mixed", ID: twice, Data: []byte(`{"take":2}`)},
	}
	out := s.WriteMany(ctx, rs, 2)
	checks := []struct {
		err     error
		existed bool
		content string
	}{
		{nil, false, `{"a":1}`},
		{ErrInvalidDirectory, false, ""},
		{ErrInvalidResult, false, ""},
		{nil, false, `{"png":true}`},
		{nil, true, `{"first":true}`},
		{nil, false, `{"take":1}`},
		{nil, true, `{"take":1}`},
	}
	for i, c := range checks {
		w := out[i]
		switch {
		case c.err != nil:
			if !errors.Is(w.Err, c.err) {
				t.Errorf("result %d: error %v, want %v", i, w.Err, c.err)
			}
			continue
		case w.Err != nil || w.Existed != c.existed:
			t.Errorf("result %d: existed %v, error %v; want existed %v", i, w.Existed, w.Err, c.existed)
			continue
		}
		if got := b.readFile(t, w.Loc.Path); string(got) != c.content {
			t.Errorf("result %d: %s reads %q, want %q", i, w.Loc.Path, got, c.content)
		}
		if w.Loc.SHA256 != sha256Hex([]byte(c.content)) {
			t.Errorf("result %d: location's digest %s is not its file's", i, w.Loc.SHA256)
		}
	}
	if got := b.readFile(t, "mixed/"+rs[3].ID.String()+".png"); string(got) != "PNG" {
		t.Errorf("the binary file reads %q", got)
	}
	if len(out[3].Loc.Files) != 1 {
		t.Errorf("the result with a binary file lists %v", out[3].Loc.Files)
	}
}

// TestWriteManyFailedSyncLosesNothing: when the batch's sync fails, nothing of it is put
// in place on the strength of that sync (commitUnnamed settles none of it, and no name
// appears); WriteMany then takes every result the named way, where each is stored or
// answered an error, never both. Not parallel: it replaces syncfs.
func TestWriteManyFailedSyncLosesNothing(t *testing.T) {
	defer func(f func(int) error) { syncfs = f }(syncfs)
	s, b := setup(t)
	syncfs = func(int) error { return unix.EIO }
	var rs []Result
	var staged []unnamed
	for i := range 4 {
		r := Result{Dir: "failing", ID: uuid.New(), Data: fmt.Appendf(nil, `{"n":%d}`, i)}
		st, ok := s.stageUnnamed(r.Dir, r.ID, r.Data)
		if !ok {
			t.Fatal("the unnamed way is not open here")
		}
		rs, staged = append(rs, r), append(staged, st)
	}
	for i, w := range s.commitUnnamed(staged, func(files []openFile) error { return s.syncFiles(t.Context(), files) }) {
		if w != nil {
			t.Errorf("result %d settled (%+v) though its sync failed", i, *w)
		}
	}
	if names := b.names(t, "failing"); len(names) != 0 {
		t.Fatalf("in place after a failed sync: %v", names)
	}

	for i, w := range s.WriteMany(context.Background(), rs, 4) {
		_, statErr := s.Stat(rs[i].Dir, rs[i].ID)
		switch {
		case w.Err != nil && statErr == nil:
			t.Errorf("result %d: error %v, yet it is in place", i, w.Err)
		case w.Err == nil && statErr != nil:
			t.Errorf("result %d: stored, yet not in place: %v", i, statErr)
		case w.Err == nil:
			if got := b.readFile(t, w.Loc.Path); string(got) != string(rs[i].Data) {
				t.Errorf("result %d reads %q, want %q", i, got, rs[i].Data)
			}
		}
	}
}

func locationsEqual(a, b task.Location) bool {
	return a.Directory == b.Directory && a.Path == b.Path && a.Bytes == b.Bytes && a.SHA256 == b.SHA256 && slices.Equal(a.Files, b.Files)
}
