package resultstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// Result is one result for WriteMany: what Write takes.
type Result struct {
	Dir   string
	ID    uuid.UUID
	Data  []byte
	Files []task.File
}

// Written is what WriteMany did with one Result: what Write returns for it.
type Written struct {
	Loc     task.Location
	Existed bool
	Err     error
}

// WriteMany stores results as Write stores each one, and answers for each in their order.
// The results without binary files go the unnamed way together, in one goroutine: their
// files are written one after another, made durable by one sync, linked into place, and
// each directory they went into is synced once (unnamedBatchMax files at a time). Written
// by a goroutine each, as Write does, they shared syncs only with the writers that met
// while one ran: a batch took two rounds of file syncs and two of directory syncs, and
// each blocked writer a thread handoff. The others, and any the unnamed way cannot take,
// go through Write, at most concurrency at once. A task listed twice is written twice:
// the first link wins, and the later ones find it (Existed).
func (s *Store) WriteMany(ctx context.Context, rs []Result, concurrency int) []Written {
	out := make([]Written, len(rs))
	var staged []unnamed
	var at []int // the index in rs of each staged result
	var rest []int
	syncAll := func(files []openFile) error { return s.syncFiles(context.Background(), files) }
	commit := func() {
		for j, w := range s.commitUnnamed(staged, syncAll) {
			i := at[j]
			if w == nil {
				rest = append(rest, i)
				continue
			}
			out[i] = *w
			if w.Err != nil {
				out[i].Err = fmt.Errorf("write result %s: %w", rs[i].ID, w.Err)
			}
		}
		staged, at = staged[:0], at[:0]
	}
	for i, r := range rs {
		err := validateWrite(r.Dir, r.Data, r.Files)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			out[i].Err = fmt.Errorf("write result %s: %w", r.ID, err)
			continue
		}
		if len(r.Files) == 0 {
			if st, ok := s.stageUnnamed(r.Dir, r.ID, r.Data); ok {
				staged, at = append(staged, st), append(at, i)
				if len(staged) == unnamedBatchMax {
					commit()
				}
				continue
			}
		}
		rest = append(rest, i)
	}
	commit()
	sem := make(chan struct{}, max(concurrency, 1))
	var wg sync.WaitGroup
	for _, i := range rest {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r := rs[i]
			out[i].Loc, out[i].Existed, out[i].Err = s.Write(ctx, r.Dir, r.ID, r.Data, r.Files)
		})
	}
	wg.Wait()
	return out
}

// unnamedBatchMax bounds the unnamed files a batch holds open before they are synced and
// linked: a call of many small results commits them in parts of this many.
const unnamedBatchMax = 256

// commitUnnamed makes the staged files durable with one call of syncBatch, links each into
// place and syncs each directory they went into once, then closes them. A nil outcome is
// one the unnamed way could not settle (the sync or the link failed, or a result found in
// place could not be read): nothing of it is in place, and Write takes it the named way.
func (s *Store) commitUnnamed(staged []unnamed, syncBatch func([]openFile) error) []*Written {
	out := make([]*Written, len(staged))
	if len(staged) == 0 {
		return out
	}
	files := make([]openFile, len(staged))
	for i, st := range staged {
		files[i] = st.file
	}
	defer func() {
		for _, f := range files {
			f.f.Close()
		}
	}()
	if err := syncBatch(files); err != nil {
		for _, st := range staged {
			s.dropDirHandle(st.dir)
		}
		return out
	}
	// A result found in place already (its task's result came twice) is answered only
	// once its directory is synced too: the writer that linked it may not have synced it
	// yet, and the answer lets the task be completed.
	linked := map[string][]int{}           // directory → the staged results linked into it or found there
	linkErrs := make([]error, len(staged)) // errExisted for a result found in place
	var dirs []string
	for i, st := range staged {
		done, err := s.linkOnly(st)
		if !done {
			continue
		}
		linkErrs[i] = err
		if linked[st.dir] == nil {
			dirs = append(dirs, st.dir)
		}
		linked[st.dir] = append(linked[st.dir], i)
	}
	for _, dir := range dirs {
		err := s.syncDir(dir)
		for _, i := range linked[dir] {
			out[i] = s.settled(staged[i], cmp.Or(err, linkErrs[i]))
		}
	}
	return out
}

// settled is the outcome of st once linked: synced (err nil) or not (err), or found there
// already (errExisted: its location is read from disk; nil if it cannot be, and the named
// way settles it).
func (s *Store) settled(st unnamed, err error) *Written {
	switch {
	case errors.Is(err, errExisted):
		loc, err := s.stat(st.dir, st.id)
		if err != nil {
			return nil
		}
		return &Written{Loc: loc, Existed: true}
	case err != nil:
		return &Written{Err: err}
	}
	return &Written{Loc: newLocation(st.dir, st.id, st.size, st.sum[:], nil)}
}
