//go:build linux

package resultstore

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// linkNew writes data to a new unnamed file in directory d (O_TMPFILE), makes it durable
// (syncData, with the other files written at the moment), and links it into d as name: the
// file appears whole or not at all, and no temp name is created and removed (on ext4 here,
// creating and unlinking a named temp file cost ten times the CPU of the whole write). existed reports that name was there already (nothing changed).
// errNoTmpfile means the file system has no O_TMPFILE; the caller writes a named temp file.
func (s *Store) linkNew(d *os.File, name string, data []byte) (existed bool, err error) {
	fd, err := unix.Openat(int(d.Fd()), ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, filePerm)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return false, errNoTmpfile
	}
	if err != nil {
		return false, err
	}
	f := s.open(os.NewFile(uintptr(fd), name))
	defer f.f.Close()
	if _, err := f.f.Write(data); err != nil {
		return false, err
	}
	if err := s.syncData(f); err != nil {
		return false, err
	}
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
