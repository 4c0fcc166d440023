// Command zd-load is the HTTP load generator of zd's benchmarks: it never
// retries a request and counts ok, refused, reset, timeout, non-2xx and other
// separately, with latency split into during and outside reloads. See
// package bench/load.
//
//	zd-load -url http://127.0.0.1:8080/ -c 32 -d 10s
//	zd-load -url ws://127.0.0.1:8080/ws -ws -c 50 -d 10s
//	zd-load -url http://127.0.0.1:8080/ -rate 5000 -close -reload 'zdctl reload' -reloads 20 -reload-every 500ms -d 2m -json
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zdtools/zd/bench/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type headerFlag http.Header

func (h headerFlag) String() string { return "" }
func (h headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("header %q: want \"Name: value\"", s)
	}
	http.Header(h).Add(strings.TrimSpace(k), strings.TrimSpace(v))
	return nil
}

// run parses args, runs the load and prints the report. Exit codes: 0 done
// (with -strict: and nothing failed), 1 with -strict when a request or a
// reload command failed, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("zd-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg load.Config
	hdr := headerFlag{}
	fs.StringVar(&cfg.URL, "url", "", "`URL` to GET (http:// only)")
	fs.DurationVar(&cfg.Duration, "d", 10*time.Second, "run at most this long")
	fs.Int64Var(&cfg.Requests, "n", 0, "send at most this many requests (0: no count bound)")
	fs.IntVar(&cfg.Connections, "c", 16, "closed loop: connections; open loop: most requests in flight")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop at this many requests per second (0: closed loop)")
	fs.BoolVar(&cfg.Close, "close", false, "send Connection: close, one connection per request")
	fs.BoolVar(&cfg.WebSocket, "ws", false, "WebSocket run: -c sessions on a ws:// url, each sending a message and awaiting its echo")
	fs.DurationVar(&cfg.MessageInterval, "ws-every", 50*time.Millisecond, "WebSocket run: pause between a session's messages")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "per-request timeout, connect included")
	fs.Var(hdr, "H", "add a request header `\"Name: value\"` (repeatable)")
	fs.StringVar(&cfg.ReloadCommand, "reload", "", "reload `command` run with sh -c while loading")
	fs.IntVar(&cfg.Reloads, "reloads", 0, "run the reload command this many times (the load stops one interval after the last)")
	fs.DurationVar(&cfg.ReloadInterval, "reload-every", time.Second, "pause before each reload")
	fs.DurationVar(&cfg.ReloadTimeout, "reload-timeout", time.Minute, "kill a reload command running longer than this")
	fs.StringVar(&cfg.MarksFile, "marks", "", "read reload windows from `file` (lines \"start UNIXNANO\", \"stop UNIXNANO\")")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	jsonFile := fs.String("o", "", "also write the JSON report to `file`")
	strict := fs.Bool("strict", false, "exit 1 if any request or reload command failed")
	verbose := fs.Bool("v", false, "log each reload to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "zd-load: unexpected argument %q\nhint: all options are flags; see zd-load -h\n", fs.Arg(0))
		return 2
	}
	if len(hdr) > 0 {
		cfg.Header = http.Header(hdr)
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	rep, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "zd-load: %v\nhint: see zd-load -h\n", err)
		return 2
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err == nil && *jsonFile != "" {
		err = writeJSONFile(*jsonFile, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "zd-load: %v\n", err)
		return 1
	}
	if *strict && (rep.Failed() > 0 || rep.ReloadsFailed > 0) {
		return 1
	}
	return 0
}

func writeJSONFile(path string, rep *load.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
