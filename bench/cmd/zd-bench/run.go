package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/zdtools/zd/bench/load"
)

// calibrate measures the maximum rate of one echo process on this machine,
// closed loop, keep-alive and Connection: close.
func calibrate(ctx context.Context, e *env, o options) (keepAlive, closeRate float64, err error) {
	port, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	r, err := startNaive(ctx, e, port)
	if err != nil {
		return 0, 0, fmt.Errorf("calibrate: %w", err)
	}
	defer r.stop()
	measure := func(close bool) (float64, error) {
		rep, err := load.Run(ctx, load.Config{URL: url(port), Duration: o.calibrate, Connections: 32, Close: close, Timeout: 5 * time.Second})
		if err != nil {
			return 0, fmt.Errorf("calibrate: %w", err)
		}
		if rep.Failed() > 0 {
			return 0, fmt.Errorf("calibrate: %d of %d requests failed with no reload at all (%v)", rep.Failed(), rep.Requests, rep.Errors)
		}
		return float64(rep.OK) / rep.DurationS, nil
	}
	if keepAlive, err = measure(false); err != nil {
		return 0, 0, err
	}
	if closeRate, err = measure(true); err != nil {
		return 0, 0, err
	}
	return keepAlive, closeRate, nil
}

func runTarget(ctx context.Context, e *env, o options, t target, keepAlive bool, rate float64) (res result) {
	res = result{Target: t.name, Note: t.note, KeepAlive: keepAlive}
	res.LoadAvg[0] = loadAvg1()
	defer func() { res.LoadAvg[1] = loadAvg1() }()
	port, err := freePort()
	if err != nil {
		res.Skipped = err.Error()
		return res
	}
	r, err := t.start(ctx, e, port)
	if errors.Is(err, errNotBuilt) {
		res.Skipped = "not run: zd-run is not built yet"
		return res
	}
	if err != nil {
		res.Skipped = "could not start: " + err.Error()
		return res
	}
	defer r.stop()
	var sampled chan int64
	stopSampling := make(chan struct{})
	if pid := r.supervisorPID(); pid != 0 {
		sampled = make(chan int64, 1)
		go func() { sampled <- sampleRSS(pid, stopSampling) }()
	}
	rep, err := load.Run(ctx, load.Config{
		URL: url(port), Duration: o.maxRun, Rate: rate, Connections: o.inFlight, Close: !keepAlive,
		Timeout: 5 * time.Second, Reloads: o.reloads, ReloadInterval: o.interval, ReloadTimeout: o.reloadTimout,
		ReloadFunc: r.reload,
	})
	if err != nil {
		close(stopSampling)
		res.Skipped = "load: " + err.Error()
		return res
	}
	res.Report = rep
	close(stopSampling)
	if pid := r.supervisorPID(); pid != 0 {
		if kb, err := peakRSS(pid); err == nil {
			res.PeakRSSkB = kb
		}
		res.SampledRSSkB = <-sampled
	}
	if z, ok := r.(*zdrun); ok {
		res.Overhead = z.overhead()
	}
	return res
}

func printResult(w io.Writer, r result) {
	mode := "keep-alive"
	if !r.KeepAlive {
		mode = "close"
	}
	if r.Report == nil {
		fmt.Fprintf(w, "%-18s %-10s %s\n", r.Target, mode, r.Skipped)
		return
	}
	p := r.Report
	fmt.Fprintf(w, "%-18s %-10s requests %7d ok %7d refused %5d reset %5d timeout %4d non-2xx %4d  reloads %d (failed %d) p50 %.0fms\n",
		r.Target, mode, p.Requests, p.OK, p.Refused, p.Reset, p.Timeout, p.Non2xx, len(p.Reloads), p.ReloadsFailed, p.ReloadMs.P50ms)
}

// idleOverhead reloads a zd-run target o.reloads times with no load at all,
// so zd-run's own share of a reload is measured without the load generator
// competing for the CPUs.
func idleOverhead(ctx context.Context, e *env, o options, t target) *overhead {
	port, err := freePort()
	if err != nil {
		return nil
	}
	r, err := t.start(ctx, e, port)
	if err != nil {
		return nil
	}
	defer r.stop()
	z, ok := r.(*zdrun)
	if !ok {
		return nil
	}
	for i := 0; i < o.reloads && ctx.Err() == nil; i++ {
		rctx, cancel := context.WithTimeout(ctx, o.reloadTimout)
		err := z.reload(rctx)
		cancel()
		if err != nil {
			fmt.Fprintf(e.logw, "zd-bench: idle reload %d of %s: %v\n", i+1, t.name, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(o.interval):
		}
	}
	return z.overhead()
}
