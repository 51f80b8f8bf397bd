// Package resultstore stores task results below one results root: <root>/<directory>/<task-id>.json,
// plus optional binary files <task-id>.<suffix> beside it. It validates the user-chosen directory
// (ValidateDirectory, used by the gateway before queueing) and writes durably and confined to the
// root (Store, used by the storekeeper before the user is notified).
//
// The JSON file is the commit marker: a result is stored once <task-id>.json exists, and it is
// written last. Binary files without their JSON are leftovers of a failed write and are replaced
// or removed by the next write of the same task.
package resultstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/batch"
)

var (
	// ErrInvalidFile is matched (errors.Is) when a File's suffix is malformed, reserved or repeated.
	ErrInvalidFile = errors.New("invalid result file")
	// ErrInvalidResult is matched (errors.Is) when the result is not valid JSON.
	ErrInvalidResult = errors.New("invalid result")
)

const (
	// MaxSuffixLen is the longest File.Suffix.
	MaxSuffixLen = 8

	resultSuffix = "json"
	dirPerm      = 0o755
	filePerm     = 0o644
	// maxDurableDirs bounds Store.durable; the set is cleared when full, which only costs fsyncs.
	maxDurableDirs = 4096
	readDirBatch   = 1024
)

// Store writes and reads results below one root directory. Every operation goes through an
// os.Root, so no name, ".." or symbolic link (even one planted inside the root later) can make it
// touch anything outside. A Store is safe for concurrent use.
type Store struct {
	root *os.Root

	mu sync.Mutex
	// durable holds directories that exist and whose entry in their parent this Store has fsynced,
	// so that only the first write into a directory pays for syncing its ancestors.
	durable map[string]struct{}
	// dirSyncs group-commits the fsyncs of each directory: writers that linked their results
	// while one fsync of the directory runs share the next one.
	dirSyncs map[string]*batch.Batcher[struct{}]
	// dirs keeps open the directories results were written to (opened through root, so
	// confined to it), for writes relative to them without walking the path each time.
	// Cleared when full; a handle dropped is closed by its finalizer once unused.
	dirs map[string]*os.File
	// noTmpfile is set once the file system refused an unnamed file: every write then
	// goes the named way at once.
	noTmpfile atomic.Bool
	// dataSyncs group-commits the syncs of written files before they go into place
	// (syncData); opens numbers the files it syncs (syncPlan).
	dataSyncs *batch.Batcher[openFile]
	opens     atomic.Uint64
	// noSyncfs is set once syncfs(2) was refused: batches are fsynced file by file then.
	noSyncfs atomic.Bool
}

// errNoTmpfile: the file system cannot make unnamed files (see createUnnamed).
var errNoTmpfile = errors.New("O_TMPFILE not supported")

// Open opens the results root, creating it (mode 0o755) if missing.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, dirPerm); err != nil {
		return nil, fmt.Errorf("open result store %s: %w", root, err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("open result store %s: %w", root, err)
	}
	s := &Store{root: r, durable: make(map[string]struct{}), dirSyncs: make(map[string]*batch.Batcher[struct{}]), dirs: make(map[string]*os.File)}
	s.dataSyncs = batch.New(context.Background(), 0, s.syncFiles)
	return s, nil
}

// Close releases the root directory.
func (s *Store) Close() error { return s.root.Close() }

// Write stores a task's result durably and returns where it is. Each file (the binary files first,
// the JSON last) is written to a temp file .<id>.<suffix>.tmp-<random> in the target directory and
// made durable (fsynced, or synced with the files other writers wrote at the moment); then, holding the task's lock, the binary files are renamed into place, the directory is
// fsynced, the JSON is hard-linked into place and the directory is fsynced again. Missing
// directories are created and their entries fsynced.
//
// Write is idempotent: if <id>.json already exists, nothing is written and the stored
// task.Location is returned with existed=true, once its directory is synced (the writer that
// put it there may not have synced it yet, and the answer lets the task be completed). The
// first write wins, also among concurrent writers, so a task has exactly one stored result
// even when a presumed-dead worker finishes late.
func (s *Store) Write(ctx context.Context, dir string, id uuid.UUID, result []byte, files []task.File) (loc task.Location, existed bool, err error) {
	loc, existed, err = s.write(ctx, dir, id, result, files)
	if err != nil {
		return task.Location{}, false, fmt.Errorf("write result %s: %w", id, err)
	}
	return loc, existed, nil
}

func (s *Store) write(ctx context.Context, dir string, id uuid.UUID, result []byte, files []task.File) (task.Location, bool, error) {
	if err := validateWrite(dir, result, files); err != nil {
		return task.Location{}, false, err
	}
	if err := ctx.Err(); err != nil {
		return task.Location{}, false, err
	}
	if len(files) == 0 {
		if loc, existed, done, err := s.writeUnnamed(dir, id, result); done {
			return loc, existed, err
		}
	}
	loc, err := s.stat(dir, id)
	if err == nil {
		return loc, true, s.syncDir(dir)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return task.Location{}, false, err
	}
	staged, err := s.stage(ctx, dir, id, result, files)
	if err != nil {
		return task.Location{}, false, err
	}
	defer s.removeTemps(staged)
	if err := ctx.Err(); err != nil {
		return task.Location{}, false, err
	}
	existed, err := s.commit(dir, id, staged)
	if err != nil {
		return task.Location{}, false, err
	}
	if existed {
		loc, err := s.stat(dir, id)
		if err == nil {
			err = s.syncDir(dir)
		}
		return loc, true, err
	}
	sum := sha256.Sum256(result)
	return newLocation(dir, id, int64(len(result)), sum[:], suffixes(files)), false, nil
}

// writeUnnamed writes a result without binary files through an unnamed file linked into
// place (stageUnnamed, then commitUnnamed with its sync shared with the other files written
// at the moment): the whole commit is that link, as in commit's lock-free case. done is
// false when this way is not open (no O_TMPFILE, a marker of a crashed write of this task,
// the directory gone): the caller writes the result through a named temp file instead.
func (s *Store) writeUnnamed(dir string, id uuid.UUID, result []byte) (loc task.Location, existed, done bool, err error) {
	st, ok := s.stageUnnamed(dir, id, result)
	if !ok {
		return loc, false, false, nil
	}
	w := s.commitUnnamed([]unnamed{st}, func(files []openFile) error { return s.syncData(files[0]) })[0]
	if w == nil {
		return loc, false, false, nil
	}
	return w.Loc, w.Existed, true, w.Err
}

// unnamed is a result written to an unnamed file in its directory, not yet linked.
type unnamed struct {
	dir  string
	id   uuid.UUID
	size int64
	sum  [sha256.Size]byte
	d    *os.File // the directory
	file openFile
}

// stageUnnamed writes result to an unnamed file in directory dir, which it makes if
// missing; ok is false when the unnamed way is not open for it (see writeUnnamed).
func (s *Store) stageUnnamed(dir string, id uuid.UUID, result []byte) (st unnamed, ok bool) {
	if s.noTmpfile.Load() {
		return st, false
	}
	if err := s.ensureDir(dir); err != nil {
		return st, false
	}
	d, err := s.dirHandle(dir)
	if err != nil {
		return st, false
	}
	marked, err := exists(d, "."+id.String()+".partial")
	switch {
	case err != nil:
		s.dropDirHandle(dir) // the directory may have been removed: the named way makes it again
		return st, false
	case marked:
		return st, false
	}
	f, err := s.createUnnamed(d, result)
	switch {
	case errors.Is(err, errNoTmpfile):
		s.noTmpfile.Store(true)
		return st, false
	case err != nil:
		s.dropDirHandle(dir) // the directory may have been removed: the named way makes it again
		return st, false
	}
	return unnamed{dir: dir, id: id, size: int64(len(result)), sum: sha256.Sum256(result), d: d, file: f}, true
}

// errExisted marks a result whose name was taken already when it was linked.
var errExisted = errors.New("result existed")

// linkOnly links st's synced file into place: err is errExisted if its name was taken
// (nothing changed); done is false when the link failed otherwise.
func (s *Store) linkOnly(st unnamed) (done bool, err error) {
	existed, err := linkUnnamed(st.file, st.d, st.id.String()+"."+resultSuffix)
	switch {
	case err != nil:
		s.dropDirHandle(st.dir)
		return false, nil
	case existed:
		return true, errExisted
	}
	return true, nil
}

// cachedDir returns the kept handle of directory dir, if there is one.
func (s *Store) cachedDir(dir string) (*os.File, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dirs[dir]
	return d, ok
}

// dirHandle returns the open directory dir.
func (s *Store) dirHandle(dir string) (*os.File, error) {
	if d, ok := s.cachedDir(dir); ok {
		return d, nil
	}
	d, err := s.root.Open(dir)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dirs) >= maxDurableDirs {
		clear(s.dirs)
	}
	s.dirs[dir] = d
	return d, nil
}

func (s *Store) dropDirHandle(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dirs, dir)
}

// Read returns the stored JSON of a task. The error matches fs.ErrNotExist when there is none.
func (s *Store) Read(dir string, id uuid.UUID) ([]byte, error) {
	data, err := s.read(dir, id)
	if err != nil {
		return nil, fmt.Errorf("read result %s: %w", id, err)
	}
	return data, nil
}

func (s *Store) read(dir string, id uuid.UUID) ([]byte, error) {
	if err := ValidateDirectory(dir); err != nil {
		return nil, err
	}
	f, err := s.openResult(dir, id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Stat returns the task.Location of a stored result. The error matches fs.ErrNotExist when there is none.
func (s *Store) Stat(dir string, id uuid.UUID) (task.Location, error) {
	var loc task.Location
	err := ValidateDirectory(dir)
	if err == nil {
		loc, err = s.stat(dir, id)
	}
	if err != nil {
		return task.Location{}, fmt.Errorf("stat result %s: %w", id, err)
	}
	return loc, nil
}

// stat hashes the stored JSON and lists the binary files beside it; dir must be valid.
func (s *Store) stat(dir string, id uuid.UUID) (task.Location, error) {
	f, err := s.openResult(dir, id)
	if err != nil {
		return task.Location{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return task.Location{}, err
	}
	files, err := s.listFiles(dir, id)
	if err != nil {
		return task.Location{}, err
	}
	return newLocation(dir, id, n, h.Sum(nil), files), nil
}

// openResult opens <dir>/<id>.json and checks that it is a regular file.
func (s *Store) openResult(dir string, id uuid.UUID) (*os.File, error) {
	f, err := s.root.Open(resultPath(dir, id, resultSuffix))
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (mode %s)", resultPath(dir, id, resultSuffix), fi.Mode())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// listFiles returns the sorted suffixes of the regular files <dir>/<id>.<suffix> other than the JSON.
func (s *Store) listFiles(dir string, id uuid.UUID) ([]string, error) {
	d, err := s.root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	prefix := id.String() + "."
	var out []string
	for {
		entries, err := d.ReadDir(readDirBatch)
		for _, e := range entries {
			suffix, ok := strings.CutPrefix(e.Name(), prefix)
			if ok && e.Type().IsRegular() && suffix != resultSuffix && validateSuffix(suffix) == nil {
				out = append(out, suffix)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(out)
	return out, nil
}

// staged is one file of a Write on its way into place.
type staged struct {
	suffix string
	temp   string // path of the temp file; "" once it has been renamed into place
	final  string
}

// stage makes dir and writes every file to an fsynced temp file in it, binary files first and
// the JSON last. On error it leaves no temp file behind.
func (s *Store) stage(ctx context.Context, dir string, id uuid.UUID, result []byte, files []task.File) ([]staged, error) {
	if err := s.ensureDir(dir); err != nil {
		return nil, err
	}
	st, err := s.writeTemps(ctx, dir, id, result, files)
	if errors.Is(err, fs.ErrNotExist) {
		// The directory was removed after this Store made it (say, by a retention job): make it again.
		s.forgetDir(dir)
		if err := s.ensureDir(dir); err != nil {
			return nil, err
		}
		st, err = s.writeTemps(ctx, dir, id, result, files)
	}
	return st, err
}

func (s *Store) writeTemps(ctx context.Context, dir string, id uuid.UUID, result []byte, files []task.File) ([]staged, error) {
	st := make([]staged, 0, len(files)+1)
	add := func(suffix string, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		temp, err := s.writeTemp(dir, id, suffix, data)
		if err != nil {
			return err
		}
		st = append(st, staged{suffix: suffix, temp: temp, final: resultPath(dir, id, suffix)})
		return nil
	}
	for _, f := range files {
		if err := add(f.Suffix, f.Data); err != nil {
			s.removeTemps(st)
			return nil, err
		}
	}
	if err := add(resultSuffix, result); err != nil {
		s.removeTemps(st)
		return nil, err
	}
	return st, nil
}

// writeTemp writes data to a new temp file in dir, makes it durable (syncData) and returns its path. The random part
// of the name means a temp file left by a crash never collides with a later write.
func (s *Store) writeTemp(dir string, id uuid.UUID, suffix string, data []byte) (string, error) {
	name := dir + "/." + id.String() + "." + suffix + ".tmp-" + rand.Text()
	file, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return "", err
	}
	f := s.open(file)
	_, err = file.Write(data)
	if err == nil {
		err = s.syncData(f)
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = s.root.Remove(name)
		return "", err
	}
	return name, nil
}

// removeTemps removes the temp files that were not moved into place. Errors are ignored: a temp
// file left behind is harmless, since its random name never blocks a later write.
func (s *Store) removeTemps(st []staged) {
	for _, f := range st {
		if f.temp != "" {
			_ = s.root.Remove(f.temp)
		}
	}
}

// commit moves the staged files into place under the task's lock, unless the result already
// exists, and reports whether it did. The lock keeps a loser's binary files from replacing the
// winner's; the JSON is linked, not renamed, so that it is never overwritten even without the lock.
//
// A result without binary files needs no lock when no earlier write of it crashed halfway
// (no marker): linking its JSON is the whole commit, and a link never replaces a file. (Every
// attempt of a task makes the same files, so a concurrent writer of it has none either.)
func (s *Store) commit(dir string, id uuid.UUID, st []staged) (existed bool, err error) {
	_, err = s.root.Lstat(partialPath(dir, id))
	locked := len(st) > 1 || !errors.Is(err, fs.ErrNotExist)
	if locked {
		unlock, err := lockTask(s.root, dir+"/."+id.String()+".lock")
		if err != nil {
			return false, err
		}
		defer unlock()
	}
	result := &st[len(st)-1]
	if _, err := s.root.Lstat(result.final); err == nil {
		return true, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	removed := false
	if locked {
		// No JSON, and we hold the lock: binary files of this task are leftovers of a
		// failed write (removeLeftovers looks at the marker again, under the lock).
		if removed, err = s.removeLeftovers(dir, id, st); err != nil {
			return false, err
		}
	}
	marker := partialPath(dir, id)
	if len(st) > 1 {
		// Binary files go into place before the JSON: mark the task as partly written
		// first (durably), so that a crash in between is found by the next write
		// without listing the whole directory.
		if err := s.touch(marker); err != nil {
			return false, err
		}
		if err := s.syncDir(dir); err != nil {
			return false, err
		}
	}
	for i := range st[:len(st)-1] {
		if err := s.root.Rename(st[i].temp, st[i].final); err != nil {
			if i == 0 {
				_ = s.root.Remove(marker) // nothing was put in place
			}
			return false, err
		}
		st[i].temp = ""
	}
	if removed || len(st) > 1 {
		if err := s.syncDir(dir); err != nil {
			return false, err
		}
	}
	if err := s.root.Link(result.temp, result.final); errors.Is(err, fs.ErrExist) {
		return true, nil // a writer that ignored the lock won; its JSON stays
	} else if err != nil {
		return false, err
	}
	// result.temp stays set: the deferred removeTemps unlinks it, which need not be durable.
	if err := s.syncDir(dir); err != nil {
		return false, err
	}
	if len(st) > 1 || removed {
		// The JSON is durable: the task is whole. A marker that outlives a crash here only
		// costs the next write of this task a directory listing.
		_ = s.root.Remove(marker)
	}
	return false, nil
}

// partialPath names the marker of a task whose binary files may be in place without its
// JSON (a write that crashed halfway).
func partialPath(dir string, id uuid.UUID) string { return dir + "/." + id.String() + ".partial" }

// touch creates the empty file name if it does not exist.
func (s *Store) touch(name string) error {
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE, filePerm)
	if err != nil {
		return err
	}
	return f.Close()
}

// removeLeftovers removes the binary files of task id that this write does not replace.
// Only a write that crashed halfway leaves such files, and it leaves its marker too: the
// directory, which may hold any number of results, is listed only then.
func (s *Store) removeLeftovers(dir string, id uuid.UUID, st []staged) (removed bool, err error) {
	if _, err := s.root.Lstat(partialPath(dir, id)); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	existing, err := s.listFiles(dir, id)
	if err != nil {
		return false, err
	}
	for _, suffix := range existing {
		if slices.ContainsFunc(st, func(f staged) bool { return f.suffix == suffix }) {
			continue
		}
		if err := s.root.Remove(resultPath(dir, id, suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = true
	}
	return removed, nil
}

// ensureDir makes dir and its missing parents, and fsyncs the parent of each one this Store has
// not yet made durable. A directory that already exists is synced too, because whoever made it
// (another goroutine, a crashed process) may not have synced it yet.
func (s *Store) ensureDir(dir string) error {
	parent := "."
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		p := dir[:i]
		if !s.isDurable(p) {
			if err := s.mkdir(p); err != nil {
				return err
			}
			if err := s.syncDir(parent); err != nil {
				return err
			}
			s.markDurable(p)
		}
		parent = p
	}
	return nil
}

// mkdir makes directory p, or checks that it is one (os.Root refuses a symlink out of the root).
func (s *Store) mkdir(p string) error {
	err := s.root.Mkdir(p, dirPerm)
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := s.root.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", p)
	}
	return nil
}

// syncDir makes the entries of directory name durable. Concurrent callers share fsyncs:
// each waits for one that started after it called, which covers what it did before.
func (s *Store) syncDir(name string) error {
	s.mu.Lock()
	b, ok := s.dirSyncs[name]
	if !ok {
		if len(s.dirSyncs) >= maxDurableDirs {
			clear(s.dirSyncs) // a batcher that is running keeps running for its callers
		}
		b = batch.New(context.Background(), 0, func(context.Context, []struct{}) error { return s.fsyncDir(name) })
		s.dirSyncs[name] = b
	}
	s.mu.Unlock()
	return b.Do(context.Background(), struct{}{})
}

func (s *Store) fsyncDir(name string) error {
	if d, ok := s.cachedDir(name); ok {
		return dirSync(d)
	}
	d, err := s.root.Open(name)
	if err != nil {
		return err
	}
	err = dirSync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// dirSync makes a directory's entries durable (a variable, so that tests can see it).
var dirSync = (*os.File).Sync

func (s *Store) isDurable(dir string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.durable[dir]
	return ok
}

func (s *Store) markDurable(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.durable) >= maxDurableDirs {
		clear(s.durable)
	}
	s.durable[dir] = struct{}{}
}

// forgetDir drops dir and its parents from the durable set, and their kept handles: a
// directory that was removed is made again, and an fsync through the old handle would
// sync the removed one.
func (s *Store) forgetDir(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i <= len(dir); i++ {
		if i == len(dir) || dir[i] == '/' {
			delete(s.durable, dir[:i])
			delete(s.dirs, dir[:i])
		}
	}
}

func validateWrite(dir string, result []byte, files []task.File) error {
	if err := ValidateDirectory(dir); err != nil {
		return err
	}
	if !json.Valid(result) {
		return fmt.Errorf("%w: not valid JSON", ErrInvalidResult)
	}
	for i, f := range files {
		if err := validateSuffix(f.Suffix); err != nil {
			return err
		}
		if slices.ContainsFunc(files[:i], func(g task.File) bool { return g.Suffix == f.Suffix }) {
			return fmt.Errorf("%w: suffix %q appears twice", ErrInvalidFile, f.Suffix)
		}
	}
	return nil
}

func validateSuffix(suffix string) error {
	if suffix == resultSuffix {
		return fmt.Errorf("%w: suffix %q is reserved for the result itself", ErrInvalidFile, suffix)
	}
	ok := len(suffix) >= 1 && len(suffix) <= MaxSuffixLen
	for i := 0; ok && i < len(suffix); i++ {
		ok = isDigit(suffix[i]) || 'a' <= suffix[i] && suffix[i] <= 'z'
	}
	if !ok {
		return fmt.Errorf("%w: suffix %q: want 1 to %d of a-z 0-9", ErrInvalidFile, truncate(suffix), MaxSuffixLen)
	}
	return nil
}

func resultPath(dir string, id uuid.UUID, suffix string) string {
	return dir + "/" + id.String() + "." + suffix
}

func suffixes(files []task.File) []string {
	out := make([]string, 0, len(files))
	for _, f := range files {
		out = append(out, f.Suffix)
	}
	slices.Sort(out)
	return out
}

func newLocation(dir string, id uuid.UUID, size int64, sum []byte, suffixes []string) task.Location {
	loc := task.Location{
		Directory: dir,
		Path:      resultPath(dir, id, resultSuffix),
		Bytes:     size,
		SHA256:    hex.EncodeToString(sum),
	}
	for _, suffix := range suffixes {
		loc.Files = append(loc.Files, resultPath(dir, id, suffix))
	}
	return loc
}
