package supervisor

import (
	"strconv"
	"syscall"
)

func itoa(i int) string { return strconv.Itoa(i) }

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
