//go:build unix && !linux

package launch

import (
	"os"
	"syscall"
)

// sysProcAttr puts each rank in its own process group.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// waitExit is not available here: the launcher then marks a rank exited
// after reaping it, leaving a short window in which a signal for its
// process group could reach a reused process group ID.
func waitExit(*os.Process) bool { return false }

// killGroup signals the process group pgid.
func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 0 {
		syscall.Kill(-pgid, sig)
	}
}
