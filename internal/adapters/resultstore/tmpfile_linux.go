//go:build linux

package resultstore

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// createUnnamed writes data to a new unnamed file in directory d (O_TMPFILE), not yet
// synced: no temp name is created and removed (on ext4 here, creating and unlinking a
// named temp file cost ten times the CPU of the whole write). errNoTmpfile means the file
// system has no O_TMPFILE; the caller writes a named temp file.
func (s *Store) createUnnamed(d *os.File, data []byte) (openFile, error) {
	fd, err := unix.Openat(int(d.Fd()), ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, filePerm)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return openFile{}, errNoTmpfile
	}
	if err != nil {
		return openFile{}, err
	}
	f := s.open(os.NewFile(uintptr(fd), "unnamed result"))
	if _, err := f.f.Write(data); err != nil {
		f.f.Close()
		return openFile{}, err
	}
	return f, nil
}

// linkUnnamed links the unnamed file f, synced, into directory d as name: the file
// appears whole or not at all. existed reports that name was there already (nothing
// changed).
func linkUnnamed(f openFile, d *os.File, name string) (existed bool, err error) {
	fd := int(f.f.Fd())
	err = unix.Linkat(fd, "", int(d.Fd()), name, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) {
		// AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link of the descriptor does not.
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), int(d.Fd()), name, unix.AT_SYMLINK_FOLLOW)
	}
	if errors.Is(err, unix.EEXIST) {
		return true, nil
	}
	return false, err
}

// exists reports whether d holds an entry name (not following a symbolic link).
func exists(d *os.File, name string) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}
