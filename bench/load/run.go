package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Config describes one load run. URL and at least one of Duration and
// Requests are required.
type Config struct {
	URL         string
	Header      http.Header
	Duration    time.Duration // stop sending after this long (0: no time bound, Requests must be set)
	Requests    int64         // stop after this many requests (0: no count bound)
	Connections int           // closed loop: workers; open loop: most requests in flight (default 16)
	Rate        float64       // requests per second; > 0 selects the open loop
	Close       bool          // send Connection: close and use a new connection per request

	Timeout time.Duration // per request, dial included (default 5s)

	// WebSocket selects a WebSocket run: URL is ws://, Connections sessions
	// each send a message, wait for its echo, then wait MessageInterval
	// (default 50ms). Rate and Close do not apply.
	WebSocket       bool
	MessageInterval time.Duration

	// Reloads runs ReloadCommand (with sh -c), or calls ReloadFunc, Reloads
	// times while loading: the first after ReloadInterval, each next one
	// ReloadInterval after the previous one ended. Each run is bounded by
	// ReloadTimeout (default 60s). The load stops ReloadInterval after the
	// last reload (or at Duration, whichever is first).
	ReloadCommand  string
	ReloadFunc     func(ctx context.Context) error // used instead of ReloadCommand when set
	Reloads        int
	ReloadInterval time.Duration
	ReloadTimeout  time.Duration

	// MarksFile, when set, is read after the run for reload windows written
	// by someone else: lines "start UNIXNANO" and "stop UNIXNANO".
	MarksFile string

	Logger *slog.Logger
}

// maxSamples bounds the memory of one run: 16 bytes a sample, 256 MB.
const maxSamples = 16 << 20

func (c *Config) setDefaults() error {
	if c.URL == "" {
		return errors.New("no url given")
	}
	if c.Duration <= 0 && c.Requests <= 0 {
		return errors.New("neither a duration nor a request count given: the run would be unbounded")
	}
	if c.Requests <= 0 || c.Requests > maxSamples {
		c.Requests = maxSamples
	}
	if c.Connections <= 0 {
		c.Connections = 16
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.ReloadTimeout <= 0 {
		c.ReloadTimeout = 60 * time.Second
	}
	if c.Reloads > 0 && c.ReloadCommand == "" && c.ReloadFunc == nil {
		return errors.New("reloads asked for but no reload command given")
	}
	if c.Reloads > 0 && c.ReloadInterval <= 0 {
		c.ReloadInterval = time.Second
	}
	if c.WebSocket && c.MessageInterval <= 0 {
		c.MessageInterval = 50 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// sample is one request: when it was due (open loop) or sent (closed loop),
// when it ended, and its class. Times are offsets from the run's start.
type sample struct {
	start, end time.Duration
	class      Class
	status     int16
}

// worker collects its own samples; merged once all workers are done.
type worker struct {
	samples []sample
	errs    [numClasses]string // the first error text of each class, for the report
}

func (w *worker) record(s sample, err error) {
	w.samples = append(w.samples, s)
	if err != nil && w.errs[s.class] == "" {
		w.errs[s.class] = s.class.String() + ": " + err.Error()
	}
}

// Run drives load as cfg says and returns the report. It returns an error
// only when the run could not start (bad configuration); failed requests
// and failed reload commands are counted in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var tgt *target
	if !cfg.WebSocket {
		t, err := newTarget(cfg.URL, cfg.Header)
		if err != nil {
			return nil, err
		}
		tgt = t
	} else if !strings.HasPrefix(cfg.URL, "ws://") {
		return nil, fmt.Errorf("url %q: a WebSocket run needs a ws:// url", cfg.URL)
	}
	// runCtx bounds everything by Duration; loadCtx also ends one
	// ReloadInterval after the last reload, so "N reloads under load" needs
	// no guess of how long N reloads take.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	if cfg.Duration > 0 {
		runCtx, cancelRun = context.WithTimeout(ctx, cfg.Duration)
		defer cancelRun()
	}
	ctx, cancel := context.WithCancel(runCtx)
	defer cancel()

	start := time.Now()
	var budget countdown
	budget.n.Store(cfg.Requests)

	var reloads []reloadRun
	var rwg sync.WaitGroup
	if cfg.Reloads > 0 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			reloads = runReloads(runCtx, cfg, start)
			t := time.NewTimer(cfg.ReloadInterval)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			cancel()
		}()
	}

	workers := make([]*worker, cfg.Connections)
	var wg sync.WaitGroup
	var ws *WSStats
	switch {
	case cfg.WebSocket:
		ws = runWS(ctx, cfg, start, &budget, workers)
	case cfg.Rate > 0:
		tickets := make(chan time.Duration)
		for i := range workers {
			w := &worker{}
			workers[i] = w
			wg.Add(1)
			go func() {
				defer wg.Done()
				openWorker(ctx, cfg, tgt, start, tickets, w)
			}()
		}
		dispatch(ctx, cfg, start, &budget, tickets)
		close(tickets)
	default:
		for i := range workers {
			w := &worker{}
			workers[i] = w
			wg.Add(1)
			go func() {
				defer wg.Done()
				closedWorker(ctx, cfg, tgt, start, &budget, w)
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	// The load ended (time, count or reloads done): start no more reloads.
	cancelRun()
	rwg.Wait()

	windows := make([]window, 0, len(reloads))
	for _, r := range reloads {
		windows = append(windows, window{r.start, r.end})
	}
	if cfg.MarksFile != "" {
		ws, err := readMarksFile(cfg.MarksFile, start)
		if err != nil {
			return nil, err
		}
		windows = append(windows, ws...)
	}
	rep := buildReport(cfg, start, elapsed, workers, windows, reloads)
	rep.WebSocket = ws
	return rep, nil
}

// closedWorker sends requests one after another on its connection until
// ctx ends or the budget is spent.
func closedWorker(ctx context.Context, cfg Config, tgt *target, start time.Time, budget *countdown, w *worker) {
	var c conn
	defer c.close()
	for ctx.Err() == nil && budget.take() {
		t0 := time.Since(start)
		status, reusable, err := tgt.do(&c, cfg.Close, cfg.Timeout)
		w.record(sample{start: t0, end: time.Since(start), class: Classify(err, status), status: int16(status)}, err)
		if err != nil || !reusable {
			c.close()
		}
	}
}

// dispatch issues a ticket (the time a request is due) every 1/Rate until
// ctx ends or the budget is spent. A send blocks while every worker is busy;
// the late request keeps its due time, so its latency includes the wait.
func dispatch(ctx context.Context, cfg Config, start time.Time, budget *countdown, tickets chan<- time.Duration) {
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := int64(0); budget.take(); i++ {
		due := time.Duration(i) * interval
		if wait := due - time.Since(start); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		case tickets <- due:
		}
	}
}

func openWorker(ctx context.Context, cfg Config, tgt *target, start time.Time, tickets <-chan time.Duration, w *worker) {
	var c conn
	defer c.close()
	for due := range tickets {
		status, reusable, err := tgt.do(&c, cfg.Close, cfg.Timeout)
		w.record(sample{start: due, end: time.Since(start), class: Classify(err, status), status: int16(status)}, err)
		if err != nil || !reusable {
			c.close()
		}
	}
}
