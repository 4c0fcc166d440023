package main

import (
	"testing"
	"time"
)

func TestAppBusy(t *testing.T) {
	rolling := `18:52:49.134 reload rolling reload to generation 2 (/work/main/bin/echo)
18:52:49.136 spawn worker 0 (pid 12017) of generation 2 started
18:52:49.142 ready worker 0 (pid 12017) of generation 2 ready after 6ms
18:52:49.158 stop worker 0 (pid 9711) of generation 1: sending SIGTERM
18:52:49.160 exit worker 0 (pid 9711) of generation 1: exit status 0
18:52:49.161 spawn worker 1 (pid 12057) of generation 2 started
18:52:49.180 ready worker 1 (pid 12057) of generation 2 ready after 19ms
18:52:49.200 stop worker 1 (pid 9729) of generation 1: sending SIGTERM
18:52:49.245 exit worker 1 (pid 9729) of generation 1: exit status 0
18:52:49.246 done generation 2 serving; reload took 112ms
`
	// 6 + 2 + 19 + 45 ms, no overlap.
	if got, want := appBusy(rolling), 72*time.Millisecond; got != want {
		t.Errorf("appBusy(rolling) = %v; want %v", got, want)
	}
	blueGreen := `10:00:00.000 spawn worker 0 (pid 1) started
10:00:00.002 spawn worker 1 (pid 2) started
10:00:00.010 ready worker 0 (pid 1) ready
10:00:00.020 ready worker 1 (pid 2) ready
10:00:00.025 stop worker 0 (pid 3) sending SIGTERM
10:00:00.026 stop worker 1 (pid 4) sending SIGTERM
10:00:00.030 exit worker 1 (pid 4) exit status 0
10:00:00.040 exit worker 0 (pid 3) exit status 0
garbage line
10:00:00.041 exit worker 9 (pid 99) never stopped
`
	// Union: [0,20] + [25,40] = 35ms.
	if got, want := appBusy(blueGreen), 35*time.Millisecond; got != want {
		t.Errorf("appBusy(blue-green) = %v; want %v", got, want)
	}
	// Inside zd-run: from the reload step (.134) to done (.246).
	if busy, inside := eventSpans(rolling); busy != 72*time.Millisecond || inside != 112*time.Millisecond {
		t.Errorf("eventSpans(rolling) = %v, %v; want 72ms, 112ms", busy, inside)
	}
	if _, inside := eventSpans(blueGreen); inside != 0 {
		t.Errorf("eventSpans(no reload/done steps) inside = %v; want 0", inside)
	}
	if got := appBusy(""); got != 0 {
		t.Errorf("appBusy(\"\") = %v; want 0", got)
	}
}
