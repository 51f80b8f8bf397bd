//go:build !linux

package main

import "syscall"

// sysProcAttr puts a child in a process group of its own, so that a signal to the
// runner's group (Ctrl-C, `make down`) reaches the runner alone and it stops the children
// in order.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
