//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package resultstore

import (
	"os"
	"sync"
)

// taskLocks serializes writers of one task within this process. Without flock(2) there is no lock
// that also covers other processes and dies with its holder, so on these platforms two processes
// writing the same task at the same moment may mix their binary files (the JSON is still linked,
// so it is never overwritten).
var taskLocks = struct {
	sync.Mutex
	m map[string]*taskLock
}{m: make(map[string]*taskLock)}

type taskLock struct {
	mu   sync.Mutex
	refs int
}

func lockTask(root *os.Root, name string) (unlock func(), err error) {
	key := root.Name() + "\x00" + name
	taskLocks.Lock()
	l := taskLocks.m[key]
	if l == nil {
		l = &taskLock{}
		taskLocks.m[key] = l
	}
	l.refs++
	taskLocks.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		taskLocks.Lock()
		if l.refs--; l.refs == 0 {
			delete(taskLocks.m, key)
		}
		taskLocks.Unlock()
	}, nil
}
