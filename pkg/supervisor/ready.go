package supervisor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ReadySpec says how a worker's readiness is known.
type ReadySpec struct {
	Kind string        // notify, tcp, http, exec or delay
	Arg  string        // address, URL or command; {slot} and {gen} expanded
	Wait time.Duration // delay
}

// ParseReady parses --ready: notify | tcp:ADDR | http:URL | exec:CMD | delay:DUR.
func ParseReady(s string) (ReadySpec, error) {
	if s == "" || s == "notify" {
		return ReadySpec{Kind: "notify"}, nil
	}
	kind, arg, ok := strings.Cut(s, ":")
	if !ok || arg == "" {
		return ReadySpec{}, fmt.Errorf("bad readiness %q (want notify, tcp:ADDR, http:URL, exec:CMD or delay:DUR)", s)
	}
	switch kind {
	case "tcp":
		arg = strings.TrimPrefix(arg, "//") // tcp://HOST:PORT, as --listen writes it
		if _, _, err := net.SplitHostPort(strings.NewReplacer("{slot}", "0", "{gen}", "0").Replace(arg)); err != nil {
			return ReadySpec{}, fmt.Errorf("bad readiness %q: %q is not HOST:PORT (like tcp:127.0.0.1:8080 or tcp::8080)", s, arg)
		}
		return ReadySpec{Kind: kind, Arg: arg}, nil
	case "http", "https":
		u, err := url.Parse(strings.NewReplacer("{slot}", "0", "{gen}", "0").Replace(s))
		if err != nil || u.Host == "" || u.Opaque != "" {
			return ReadySpec{}, fmt.Errorf("bad readiness %q: want a URL with a host, like http://127.0.0.1:8080/healthz", s)
		}
		return ReadySpec{Kind: "http", Arg: s}, nil
	case "exec":
		if strings.TrimSpace(arg) == "" {
			return ReadySpec{}, fmt.Errorf("bad readiness %q: want a command, like exec:./healthcheck", s)
		}
		return ReadySpec{Kind: kind, Arg: arg}, nil
	case "delay":
		d, err := parseDelay(arg)
		if err != nil {
			return ReadySpec{}, fmt.Errorf("bad readiness %q: want seconds or a duration, like delay:2 or delay:500ms", s)
		}
		return ReadySpec{Kind: kind, Wait: d}, nil
	}
	return ReadySpec{}, fmt.Errorf("bad readiness %q (want notify, tcp:ADDR, http:URL, exec:CMD or delay:DUR)", s)
}

// parseDelay reads delay:DUR as every duration flag is read: a bare number
// of seconds or a Go duration, not negative.
func parseDelay(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1e9 {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("not a duration")
	}
	return d, nil
}

// String gives the flag form.
func (r ReadySpec) String() string {
	switch r.Kind {
	case "", "notify":
		return "notify"
	case "delay":
		return "delay:" + r.Wait.String()
	case "http":
		return r.Arg
	}
	return r.Kind + ":" + r.Arg
}

// probe polls until the worker answers the probe, ctx ends or the worker
// exits (exited closes). It returns nil when ready.
func (s *Supervisor) probe(ctx context.Context, w *worker) error {
	spec := s.cfg.Ready
	if spec.Kind == "delay" {
		select {
		case <-time.After(spec.Wait):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-w.exited:
			return errExited
		}
	}
	arg := expand(spec.Arg, w.slot, w.gen)
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var err error
		switch spec.Kind {
		case "tcp":
			var c net.Conn
			c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", arg)
			if err == nil {
				c.Close()
			}
		case "http":
			err = httpProbe(ctx, client, arg)
		case "exec":
			err = s.runHook(ctx, arg, w, time.Until(deadlineOr(ctx, 10*time.Second)))
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.exited:
			return errExited
		case <-tick.C:
		}
	}
}

func deadlineOr(ctx context.Context, d time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d)
}

func httpProbe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("probe %s: status %s", url, resp.Status)
	}
	return nil
}
