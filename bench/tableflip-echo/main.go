// Command tableflip-echo is the echo app of zd's benchmarks built the way
// github.com/cloudflare/tableflip documents graceful upgrades, as a point of
// comparison for zd-run: on SIGHUP it starts a new copy of itself that
// inherits the listener, and once that copy is ready the old one shuts its
// http.Server down. It is a separate module so zd itself does not depend on
// tableflip.
//
//	tableflip-echo -listen 127.0.0.1:8080 -pidfile /tmp/tf.pid &
//	kill -HUP $(cat /tmp/tf.pid)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	pidFile := flag.String("pidfile", "", "write the serving process's pid here once it is ready")
	grace := flag.Duration("grace", 25*time.Second, "longest http.Server.Shutdown after an upgrade")
	flag.Parse()
	if err := run(*listen, *pidFile, *grace); err != nil {
		log.Printf("tableflip-echo[%d]: %v", os.Getpid(), err)
		os.Exit(1)
	}
}

func run(listen, pidFile string, grace time.Duration) error {
	upg, err := tableflip.New(tableflip.Options{PIDFile: pidFile, UpgradeTimeout: 30 * time.Second})
	if err != nil {
		return fmt.Errorf("tableflip: %w", err)
	}
	defer upg.Stop()

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sig {
			if s != syscall.SIGHUP {
				upg.Stop()
				return
			}
			if err := upg.Upgrade(); err != nil {
				log.Printf("tableflip-echo[%d]: upgrade failed: %v", os.Getpid(), err)
			}
		}
	}()

	ln, err := upg.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	pid := os.Getpid()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "hello from pid %d (tableflip)\n", pid)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	if err := upg.Ready(); err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	select {
	case <-upg.Exit():
	case err := <-done:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return srv.Shutdown(ctx)
}
