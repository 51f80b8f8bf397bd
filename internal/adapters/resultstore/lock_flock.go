//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package resultstore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockTask takes an exclusive flock(2) on the lock file name (created if missing) and returns the
// function that releases it. flock serializes writers of one task across goroutines (each call
// opens its own file description) and across processes sharing the results root, and the kernel
// drops it when a process dies, so a lock file left by a crash never blocks a later write.
//
// The holder removes the file before unlocking, so lock files do not pile up. A waiter that was
// blocked on the removed file sees that the name no longer refers to the file it locked, and tries
// again. Waiting is not cancellable, but holders only rename, link and fsync.
func lockTask(root *os.Root, name string) (unlock func(), err error) {
	for {
		f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		current, err := lockFile(root, f, name)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if current {
			return func() {
				_ = root.Remove(name)
				_ = f.Close() // releases the lock
			}, nil
		}
		f.Close()
	}
}

// lockFile locks f and reports whether name still refers to it.
func lockFile(root *os.Root, f *os.File, name string) (bool, error) {
	if err := flock(f, syscall.LOCK_EX); err != nil {
		return false, err
	}
	held, err := f.Stat()
	if err != nil {
		return false, err
	}
	now, err := root.Lstat(name)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, now), nil
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
