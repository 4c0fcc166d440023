package sdnotify

import "golang.org/x/sys/unix"

// MonotonicUsec returns CLOCK_MONOTONIC in microseconds, the clock systemd
// expects in MONOTONIC_USEC= alongside RELOADING=1:
//
//	sdnotify.Notify(os.Getenv, fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", sdnotify.MonotonicUsec()))
func MonotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0 // cannot happen on Linux: CLOCK_MONOTONIC always exists
	}
	return ts.Sec*1_000_000 + ts.Nsec/1000
}
