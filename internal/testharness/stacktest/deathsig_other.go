//go:build !linux

package stacktest

import "syscall"

// dieWithParent does nothing where the kernel cannot tie a process to its parent's life.
func dieWithParent(*syscall.SysProcAttr) {}
