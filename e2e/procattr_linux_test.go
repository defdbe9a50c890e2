package e2e

import (
	"os/exec"
	"syscall"
)

// killWithParent has the kernel kill cmd's process if this test process
// dies first, so that no demo server outlives a crashed or killed test.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
