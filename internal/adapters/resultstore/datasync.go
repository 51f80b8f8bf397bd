package resultstore

import (
	"context"
	"os"
	"slices"
)

// openFile is a file written and not yet durable, with the order in which it was opened
// among the Store's files (see syncPlan).
type openFile struct {
	f   *os.File
	seq uint64
}

// open numbers f, just opened, for syncData.
func (s *Store) open(f *os.File) openFile {
	return openFile{f: f, seq: s.opens.Add(1)}
}

// syncData makes f's data and inode durable before it is linked or renamed into place.
// Concurrent writers share the work (group commit, see syncFiles): a writer waits for a
// sync that started after it called.
func (s *Store) syncData(f openFile) error {
	return s.dataSyncs.Do(context.Background(), f)
}

// syncDevice is one file system of a batch and the file through which to sync it.
type syncDevice struct {
	dev uint64
	via int // index in the batch of the file opened first on dev
}

// syncPlan picks, for each file system of a batch (devs[i] is the device of files[i]),
// the file opened first on it: a sync of the whole file system through that file reports
// any write-back error since it was opened (Linux keeps one error cursor per open file),
// so it covers every file of the batch on that file system, all opened after it, even
// when another sync has reported that error already. Devices come in order of first
// appearance.
func syncPlan(files []openFile, devs []uint64) []syncDevice {
	var plan []syncDevice
	for i, dev := range devs {
		j := slices.IndexFunc(plan, func(p syncDevice) bool { return p.dev == dev })
		switch {
		case j < 0:
			plan = append(plan, syncDevice{dev: dev, via: i})
		case files[i].seq < files[plan[j].via].seq:
			plan[j].via = i
		}
	}
	return plan
}

// syncEach fsyncs every file, and returns the first error.
func syncEach(files []openFile) error {
	var first error
	for _, f := range files {
		if err := f.f.Sync(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
