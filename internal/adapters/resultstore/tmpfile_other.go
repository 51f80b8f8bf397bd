//go:build !linux

package resultstore

import "os"

// createUnnamed needs O_TMPFILE (Linux): elsewhere every result is written through a
// named temp file.
func (*Store) createUnnamed(*os.File, []byte) (openFile, error) { return openFile{}, errNoTmpfile }

// linkUnnamed is never reached where createUnnamed always fails.
func linkUnnamed(openFile, *os.File, string) (bool, error) { return false, errNoTmpfile }

func exists(*os.File, string) (bool, error) { return false, errNoTmpfile }
