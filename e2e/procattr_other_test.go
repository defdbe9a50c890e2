//go:build !linux

package e2e

import "os/exec"

// killWithParent does nothing here: only Linux can tie a child's life to
// its parent's. The tests' cleanups still kill what they start.
func killWithParent(*exec.Cmd) {}
