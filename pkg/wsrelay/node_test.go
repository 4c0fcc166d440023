package wsrelay

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestNodeClientThroughMoves: Node's ws (an independent implementation,
// offering permessage-deflate) sends numbered messages through the relay
// while sessions are moved between backends again and again; every echo
// is checked by the script. .ci/run installs the npm package (npm ci in
// testdata/node); without node or it, the test is skipped with a message.
func TestNodeClientThroughMoves(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: install nodejs and run npm ci in pkg/wsrelay/testdata/node (as .ci/run does)")
	}
	dir, _ := filepath.Abs("testdata/node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws")); err != nil {
		t.Skip("npm package ws missing: run npm ci in pkg/wsrelay/testdata/node (as .ci/run does)")
	}
	const clients, messages = 20, 500
	a, b := startEcho(t, "na", false), startEcho(t, "nb", false)
	rt := &router{}
	rt.set(a)
	r, url := startRelay(t, Config{}, rt)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "client.js"), url+"/ws", "20", "500")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	waitFor(t, "node's sessions", 30*time.Second, func() bool { return r.Sessions("") == clients })
	cur, other := a, b
	moves := 0
	var werr error
loop:
	for {
		select {
		case werr = <-exited:
			break loop
		default:
		}
		rt.set(other)
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		if err := r.Drain(dctx, cur.name); err != nil {
			t.Errorf("Drain(%s): %v", cur.name, err)
		}
		dcancel()
		moves++
		cur, other = other, cur
		// Let some messages pass on each backend before the next move.
		before := r.Stats().MessagesToBackend
		waitFor(t, "messages between moves", 30*time.Second, func() bool {
			select {
			case werr = <-exited:
				exited <- werr
				return true
			default:
			}
			return r.Stats().MessagesToBackend >= before+200
		})
	}
	var res struct {
		Clients, Messages, OK, Mismatched int
		Closes                            map[string]int
		Errors                            []string
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("node client: %v; output %q, stderr %q (exit %v)", err, out.String(), errb.String(), werr)
	}
	if werr != nil || res.OK != clients || res.Mismatched != 0 {
		t.Fatalf("node client: %d/%d sessions ok, %d mismatched, closes %v, errors %v (exit %v)", res.OK, clients, res.Mismatched, res.Closes, res.Errors, werr)
	}
	st := r.Stats()
	if st.Moved == 0 {
		t.Errorf("no session moved during %d drains", moves)
	}
	t.Logf("node ws: %d sessions x %d messages ok through %d drains (%d session moves), closes %v", clients, messages, moves, st.Moved, res.Closes)
}
