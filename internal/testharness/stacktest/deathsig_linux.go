package stacktest

import "syscall"

// dieWithParent makes the kernel kill a started process when the test process dies (a
// test binary killed by its timeout, or by hand, cannot stop its stack in order; its
// processes would live on, holding ports and CPU).
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
