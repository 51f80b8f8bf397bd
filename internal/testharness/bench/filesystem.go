package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// FileSystem is the file system that holds the stack's directory (the results, the
// stores' data), as the report names it.
//
// It matters on ext4 without a journal: there the kernel does not reuse an inode deleted
// less than 60 s ago (360 s while its inode table block is dirty), and every new inode
// skips those one at a time (fs/ext4/ialloc.c, recently_deleted). Within minutes of a mass
// deletion (another run's teardown), every result file costs the storekeeper CPU in
// proportion to what was deleted: up to 1.8 times its usual in a burst measured right
// after a bench's teardown (README, "Benchmarks").
type FileSystem struct {
	Path   string `json:"path"`   // the directory asked about
	Type   string `json:"type"`   // "ext4", "xfs", "tmpfs", ...
	Source string `json:"source"` // the device, as mounted
	// Journal is set for ext4: whether it has a journal.
	Journal *bool `json:"journal,omitempty"`
}

// Journalless reports an ext4 file system without a journal.
func (f FileSystem) Journalless() bool { return f.Journal != nil && !*f.Journal }

// Note is what the report prints about f, if anything.
func (f FileSystem) Note() string {
	if !f.Journalless() {
		return ""
	}
	return fmt.Sprintf("note: %s is on ext4 without a journal (%s): within minutes of a mass deletion on it, creating files costs more (README, \"Benchmarks\"); compare runs kept (-keep) or six minutes apart", f.Path, f.Source)
}

// fileSystemOf finds the file system of dir from /proc/self/mountinfo, and for ext4
// whether /proc/fs/jbd2 has a journal of its device.
func fileSystemOf(dir string) (FileSystem, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return FileSystem{}, err
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return FileSystem{}, err
	}
	fs, ok := mountOf(string(info), abs)
	if !ok {
		return FileSystem{}, fmt.Errorf("no mount holds %s", abs)
	}
	fs.Path = dir
	if fs.Type == "ext4" {
		entries, err := os.ReadDir("/proc/fs/jbd2")
		if err != nil && !os.IsNotExist(err) {
			return fs, err
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		journal := hasJournal(names, fs.Source)
		fs.Journal = &journal
	}
	return fs, nil
}

// mountOf returns the type and source of the mount, among the lines of a mountinfo file,
// whose mount point is the longest that holds path.
func mountOf(mountinfo, path string) (FileSystem, bool) {
	var best FileSystem
	bestLen := -1
	for line := range strings.Lines(mountinfo) {
		// id parent major:minor root mountpoint options [optional...] - type source superoptions
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 2 {
			continue
		}
		mp := unescapeMount(f[4])
		if !within(path, mp) || len(mp) <= bestLen {
			continue
		}
		best, bestLen = FileSystem{Type: g[0], Source: g[1]}, len(mp)
	}
	return best, bestLen >= 0
}

// within reports whether path is mount point mp or below it.
func within(path, mp string) bool {
	if mp == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == mp || strings.HasPrefix(path, mp+"/")
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// hasJournal reports whether /proc/fs/jbd2 (its entries: "<device>-<inode>") names a
// journal of device source ("/dev/vda" → "vda-8").
func hasJournal(jbd2 []string, source string) bool {
	dev := filepath.Base(source)
	for _, name := range jbd2 {
		if strings.HasPrefix(name, dev+"-") {
			return true
		}
	}
	return false
}
