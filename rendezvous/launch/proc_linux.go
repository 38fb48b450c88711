package launch

import (
	"os"
	"syscall"
	"unsafe"
)

// sysProcAttr puts each rank in its own process group (so that the
// launcher can signal the rank and whatever it started) and asks the
// kernel to SIGKILL the rank if the launcher dies. Pdeathsig is best
// effort: it fires when the launcher's thread that started the rank
// exits, which for a Go program is normally the process's exit.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitExit blocks until p has exited, without reaping it (waitid with
// WNOWAIT), so that p's PID and process group ID stay reserved until
// cmd.Wait. It reports false if it could not wait that way.
func waitExit(p *os.Process) bool {
	const (
		pPID    = 1
		wExited = 4
		wNowait = 0x1000000
	)
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(p.Pid),
			uintptr(unsafe.Pointer(&info[0])), wExited|wNowait, 0, 0)
		switch errno {
		case 0:
			return true
		case syscall.EINTR:
			continue
		default:
			return false
		}
	}
}

// killGroup signals the process group pgid.
func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 0 {
		syscall.Kill(-pgid, sig)
	}
}
