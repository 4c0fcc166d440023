package testscripts

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
	"golang.org/x/sys/unix"
)

// kill -9 of zd-run: no worker outlives it by more than a second (they die
// of PR_SET_PDEATHSIG).
func TestRunKill9LeavesNoWorker(t *testing.T) {
	r := startZdRun(t, "--workers", "3", "--", "zd-echo")
	st := r.waitHealthy()
	if len(st.Workers) != 3 {
		t.Fatalf("status has %d workers; want 3", len(st.Workers))
	}
	if err := r.cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-r.done
	killed := time.Now()
	for _, w := range st.Workers {
		for alive(w.PID) {
			// PDEATHSIG is immediate; the bound is for a busy machine
			// (without it they would live on for ever).
			if time.Since(killed) > 10*time.Second {
				t.Fatalf("worker %d (pid %d) still alive %v after zd-run was killed", w.Slot, w.PID, time.Since(killed))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A crashed worker is respawned; a crash loop stops at the respawn limit
// and the service is degraded (zdctl health exits 5).
func TestRunRespawnAndDegraded(t *testing.T) {
	dir := shortDir(t)
	flag := filepath.Join(dir, "crash")
	app := filepath.Join(dir, "app")
	// The app crashes 100ms after ready once the flag file exists.
	script := "#!/bin/sh\nif [ -e " + flag + " ]; then exec zd-echo -crash-after-ready 100ms; fi\nexec zd-echo\n"
	if err := os.WriteFile(app, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := startZdRun(t, "--workers", "2", "--respawn-limit", "3", "--respawn-window", "60s", "--", app)
	st := r.waitHealthy()
	victim := st.Workers[0]
	if err := unix.Kill(victim.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = r.waitFor("the killed worker respawned", 20*time.Second, func(st runapi.Status) bool {
		for _, w := range st.Workers {
			if w.Slot == victim.Slot && w.PID != victim.PID && w.State == "ready" {
				return st.Health == runapi.HealthHealthy
			}
		}
		return false
	})
	if st.WorkerStats.Restarts != 1 {
		t.Errorf("restarts = %d; want 1", st.WorkerStats.Restarts)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, w := range st.Workers {
		unix.Kill(w.PID, unix.SIGKILL)
	}
	st = r.waitFor("degraded after the respawn limit", 30*time.Second, func(st runapi.Status) bool {
		return st.Health == runapi.HealthDegraded && strings.Contains(string(st.HealthReason), "respawn limit")
	})
	out, _, code := r.zdctl("health")
	if code != 5 || !strings.Contains(out, "degraded") {
		t.Errorf("zdctl health = %q, exit %d; want degraded, exit 5", out, code)
	}
	// The log says so, naming the slot left empty.
	if !regexp.MustCompile(`level=ERROR msg="respawn limit reached; slot left empty" .*slot=[01] generation=1 release=\S+/app restarts=3 window=1m0s`).MatchString(r.log()) {
		t.Errorf("zd-run's log does not say the respawn limit was reached:\n%s", r.log())
	}
	// A fixed release brings it back.
	os.Remove(flag)
	if _, stderr, code := r.zdctl("reload"); code != 0 {
		t.Fatalf("reload after the fix: exit %d: %s", code, stderr)
	}
	r.waitHealthy()
}

// Exit codes of zdctl reload: 3 when the reload aborted (old generation
// still serving), 1 when another reload is in progress.
func TestZdctlReloadExitCodes(t *testing.T) {
	dir := shortDir(t)
	app := filepath.Join(dir, "current")
	good := filepath.Join(dir, "good")
	slow := filepath.Join(dir, "slow")
	bad := filepath.Join(dir, "bad")
	for p, s := range map[string]string{good: "exec zd-echo", slow: "exec zd-echo -start-delay 1500ms", bad: "exec zd-echo -crash-at-start"} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+s+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(good, app); err != nil {
		t.Fatal(err)
	}
	r := startZdRun(t, "--workers", "1", "--", app)
	r.waitHealthy()
	relink := func(to string) {
		os.Remove(app)
		if err := os.Symlink(to, app); err != nil {
			t.Fatal(err)
		}
	}
	relink(bad)
	_, stderr, code := r.zdctl("reload")
	if code != 3 || !strings.Contains(stderr, "exited before it was ready") {
		t.Errorf("reload of a crashing release: exit %d, stderr %q; want exit 3 naming the cause", code, stderr)
	}
	// Two reloads at once: the second is refused while the first runs.
	relink(slow)
	first := exec.Command("zdctl", "--state-dir", r.dir, "reload")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitFor("reload in progress", 10*time.Second, func(st runapi.Status) bool { return st.ReloadInProgress })
	_, stderr, code = r.zdctl("reload")
	if code != 1 || !strings.Contains(stderr, "reload already in progress") {
		t.Errorf("second reload: exit %d, stderr %q; want exit 1, reload already in progress", code, stderr)
	}
	if err := first.Wait(); err != nil {
		t.Errorf("first reload: %v", err)
	}
	st := r.waitHealthy()
	if st.Generation != 3 {
		t.Errorf("generation = %d; want 3 (the aborted reload used 2)", st.Generation)
	}
	// A reload during a stop is refused.
	relink(slow)
	if _, _, code := r.zdctl("stop", "--no-wait"); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	_, stderr, code = r.zdctl("reload")
	if code == 0 {
		t.Errorf("reload during stop: exit 0; want refused (%s)", stderr)
	}
}

// The control socket refuses a peer with another uid (SO_PEERCRED), even
// when the socket file would let it in; garbage is refused and zd-run keeps
// serving.
func TestControlSocketPeers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another uid")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	r := startZdRun(t, "--workers", "1", "--", "zd-echo")
	r.waitHealthy()
	sock := filepath.Join(r.dir, "run.sock")
	// Open the way through the file system so that only SO_PEERCRED decides.
	// Only the test's own folders: their parent is the system's temp dir
	// (/tmp), whose mode (1777) must not be touched.
	for _, p := range []string{filepath.Dir(r.dir), r.dir} {
		os.Chmod(p, 0o711)
	}
	os.Chmod(sock, 0o666)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary must be reachable by nobody: copy it as zdctl.
	bin := filepath.Join(shortDir(t), "zdctl")
	os.Chmod(filepath.Dir(bin), 0o755)
	if b, err := os.ReadFile(self); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "--state-dir", r.dir, "status")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "uid 65534 may not use") {
		t.Errorf("zdctl as uid 65534: err %v, output %q; want refused by SO_PEERCRED", err, out)
	}
	// Garbage on the socket.
	for _, junk := range []string{"GET / HTTP/1.1\r\n\r\n", "\xff\xff\xff\xff", "\x00\x00\x00\x03abc"} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(junk))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		c.Read(buf)
		c.Close()
	}
	if st, err := r.status(); err != nil || st.Health != runapi.HealthHealthy {
		t.Errorf("after garbage: status %+v, %v; want healthy", st.Health, err)
	}
}

// The Python stdlib example runs under zd-run unchanged and reloads with 0
// failed requests.
func TestPythonExampleReloads(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3")
	}
	_, file, _, _ := runtime.Caller(0)
	app := filepath.Join(filepath.Dir(file), "..", "examples", "python-http", "app.py")
	r := startZdRun(t, "--workers", "2", "--grace", "10s", "--", py, app)
	r.waitHealthy()
	l := startLoad(r.sock, 4)
	for i := range 5 {
		strategy := []string{"rolling", "blue-green"}[i%2]
		if _, stderr, code := r.zdctl("reload", "--strategy", strategy); code != 0 {
			t.Fatalf("reload %d (%s): exit %d: %s", i, strategy, code, stderr)
		}
	}
	ok, failed := l.stop(t)
	if failed != 0 || ok == 0 {
		t.Errorf("python app over 5 reloads: %d ok, %d failed; want 0 failed", ok, failed)
	}
	t.Logf("python app over 5 reloads: %d requests, %d failed", ok, failed)
}

// --user: zd-run (root) binds the socket, the workers run as nobody and can
// still report ready.
func TestRunWorkersAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	py := "/usr/bin/python3" // not a shim in root's home, which nobody cannot enter
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3")
	}
	_, file, _, _ := runtime.Caller(0)
	src, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "examples", "python-http", "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	os.Chmod(dir, 0o755)
	app := filepath.Join(dir, "app.py")
	if err := os.WriteFile(app, src, 0o644); err != nil {
		t.Fatal(err)
	}
	r := startZdRun(t, "--workers", "2", "--user", "nobody", "--max-fds", "512", "--", py, app)
	st := r.waitHealthy()
	for _, w := range st.Workers {
		b, err := os.ReadFile(filepath.Join("/proc", itoa(w.PID), "status"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "\nUid:\t65534\t65534\t65534\t65534\n") {
			t.Errorf("worker %d (pid %d) does not run as nobody:\n%s", w.Slot, w.PID, b)
		}
		lim, err := os.ReadFile(filepath.Join("/proc", itoa(w.PID), "limits"))
		if err != nil || !strings.Contains(string(lim), "Max open files            512                  512") {
			t.Errorf("worker %d limits: %v\n%s", w.Slot, err, lim)
		}
	}
	if _, stderr, code := r.zdctl("reload"); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, stderr)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// --cpu-limit works where zd-run can create a cgroup v2 child, and is
// refused with the reason everywhere else.
func TestRunCPULimit(t *testing.T) {
	base := shortDir(t)
	cmd := exec.Command("zd-run", "--state-dir", filepath.Join(base, "st"), "--listen", "unix://"+filepath.Join(base, "a.sock"),
		"--cpu-limit", "50", "--", "zd-echo")
	done := make(chan []byte, 1)
	go func() { out, _ := cmd.CombinedOutput(); done <- out }()
	r := &zdRun{t: t, dir: filepath.Join(base, "st")}
	// Either zd-run refuses (and exits) or it comes up: wait for whichever.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case out := <-done:
			if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), "--cpu-limit") {
				t.Fatalf("zd-run --cpu-limit exited %d without a reason: %s", cmd.ProcessState.ExitCode(), out)
			}
			t.Logf("refused here, as it should be: %s", out)
			return
		default:
		}
		if _, err := r.status(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("zd-run --cpu-limit neither refused nor came up within 30s")
		}
	}
	st := r.waitHealthy()
	cg, _ := os.ReadFile(filepath.Join("/proc", itoa(st.Workers[0].PID), "cgroup"))
	rel := strings.TrimPrefix(strings.TrimSpace(string(cg)), "0::")
	max, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", rel, "cpu.max"))
	if err != nil || strings.TrimSpace(string(max)) != "50000 100000" {
		t.Errorf("worker cgroup %s cpu.max = %q, %v; want 50000 100000", rel, max, err)
	}
	r.zdctl("stop")
	<-done
}

// A state dir owned by another user is refused (exit 2, with a hint), and
// nothing is started.
func TestRunForeignStateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a directory another user's")
	}
	dir := filepath.Join(shortDir(t), "st")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("zd-run", "--state-dir", dir, "--", "zd-echo").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "owned by uid 65534") || !strings.Contains(string(out), "hint:") {
		t.Errorf("zd-run on a foreign state dir: %v\n%s\nwant exit 2, owned by uid 65534, a hint", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "run.sock")); err == nil {
		t.Errorf("run.sock was created in the refused dir")
	}
}
