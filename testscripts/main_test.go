// Package testscripts runs the five zd programs end to end with
// rogpeppe/go-internal/testscript. Scripts live in testdata/*.txtar; each
// program runs in-process from the test binary, dispatched by argv[0].
//
// Update golden output with TESTSCRIPT_UPDATE=1.
package testscripts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/zdtools/zd/examples/echo/echoapp"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/cli/zdctl"
	"github.com/zdtools/zd/pkg/cli/zdhandoff"
	"github.com/zdtools/zd/pkg/cli/zdqueue"
	"github.com/zdtools/zd/pkg/cli/zdrun"
	"github.com/zdtools/zd/pkg/cli/zdsnapshot"
)

type mainFunc func(context.Context, []string, cmdkit.IO) int

func program(m mainFunc) func() {
	return func() { os.Exit(m(context.Background(), os.Args, cmdkit.OSIO())) }
}

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"zd-run":      program(zdrun.Main),
		"zd-handoff":  program(zdhandoff.Main),
		"zd-snapshot": program(zdsnapshot.Main),
		"zd-queue":    program(zdqueue.Main),
		"zdctl":       program(zdctl.Main),
		// testapp is a tiny app that knows nothing of zd: it serves the
		// sockets it inherits through LISTEN_FDS (see testapp.go).
		"testapp": func() { os.Exit(testApp(os.Args[1:])) },
		// zd-echo is examples/echo, the example app zd-run's scripts run.
		"zd-echo": func() { os.Exit(echoapp.Main(os.Args[1:], os.Stderr)) },
		// zd-pingprobe measures echo gaps from a lean process of its own
		// (pingprobe_test.go).
		"zd-pingprobe": func() { os.Exit(pingProbe(os.Args[1:])) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("TESTSCRIPT_UPDATE") == "1",
		Setup: func(env *testscript.Env) error {
			// Keep unix socket paths short: $WORK can be deep, sun_path is 108 bytes.
			dir, err := os.MkdirTemp("", "zd")
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(dir) })
			// A script that fails half-way leaves the daemons it started
			// detached (handoff.sh's serve, a background zd-run) running;
			// end every process whose command line names this script's
			// folders, so a failed run does not leak into the next ones.
			work := env.WorkDir
			env.Defer(func() { reapStrays(dir, work) })
			env.Setenv("SOCKDIR", dir)
			env.Setenv("XDG_RUNTIME_DIR", dir)
			env.Setenv("NO_COLOR", "1")
			// The deploy scripts in scripts/, run by the scripts_*.txtar tests.
			scripts, err := filepath.Abs(filepath.Join("..", "scripts"))
			if err != nil {
				return err
			}
			env.Setenv("ZD_SCRIPTS", scripts)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond == "race" {
				return raceEnabled, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"signal":  cmdSignal,
			"waitfor": cmdWaitFor,
			// zd-snapshot's scripts: make records, damage files on purpose.
			"genrecords": cmdGenRecords,
			"damage":     cmdDamage,
		},
	})
}
