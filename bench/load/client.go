package load

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// conn is one HTTP/1.1 client connection, written by hand so that a failure
// is seen as it happened: net/http's Transport silently retries idempotent
// requests whose pooled connection died, which would hide exactly the resets
// a reload benchmark is looking for.
type conn struct {
	nc net.Conn
	br *bufio.Reader
}

// target is a parsed URL plus the request bytes, built once.
type target struct {
	addr      string // host:port to dial
	keepAlive []byte // request with keep-alive
	close     []byte // request with Connection: close
}

func newTarget(rawURL string, header http.Header) (*target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse url %q: %w", rawURL, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("url %q: only http:// is supported", rawURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	path := u.RequestURI()
	build := func(connection string) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: zd-load\r\n", path, u.Host)
		if connection != "" {
			fmt.Fprintf(&b, "Connection: %s\r\n", connection)
		}
		for k, vs := range header {
			for _, v := range vs {
				fmt.Fprintf(&b, "%s: %s\r\n", k, v)
			}
		}
		b.WriteString("\r\n")
		return []byte(b.String())
	}
	return &target{addr: host, keepAlive: build(""), close: build("close")}, nil
}

// do sends one request on c (dialling first if c.nc is nil) and reads the
// whole response. It returns the status, whether the connection can be
// reused, and the error that ended the request. The caller closes c on error.
// A request is bounded by timeout only, not by the run's context: a request
// in flight when the run ends completes and is counted.
func (t *target) do(c *conn, closeConn bool, timeout time.Duration) (status int, reusable bool, err error) {
	deadline := time.Now().Add(timeout)
	if c.nc == nil {
		d := net.Dialer{Deadline: deadline}
		nc, err := d.Dial("tcp", t.addr)
		if err != nil {
			return 0, false, fmt.Errorf("connect: %w", err)
		}
		c.nc = nc
		if c.br == nil {
			c.br = bufio.NewReaderSize(nc, 16<<10)
		} else {
			c.br.Reset(nc)
		}
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return 0, false, fmt.Errorf("set deadline: %w", err)
	}
	req := t.keepAlive
	if closeConn {
		req = t.close
	}
	if _, err := c.nc.Write(req); err != nil {
		return 0, false, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, false, fmt.Errorf("read response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, false, fmt.Errorf("read response body: %w", err)
	}
	return resp.StatusCode, !closeConn && !resp.Close, nil
}

func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
}
