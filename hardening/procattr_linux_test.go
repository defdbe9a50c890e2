package hardening

import (
	"os/exec"
	"syscall"
)

// killWithParent has the kernel kill cmd's process if the test process
// dies first.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
