package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// AccessLog writes one line per finished client request, in the common log
// format or as JSON. Lines are buffered and flushed at least every
// accessLogFlush, so a busy proxy makes few write calls; Close flushes.
// A file is opened for appending and reopened by Reopen (after logrotate
// moved it, on SIGUSR1).
type AccessLog struct {
	path string // "" when writing to a stream given to OpenAccessLog
	json bool

	mu  sync.Mutex
	out io.Writer
	f   *os.File // the open file, when path is set
	buf *bufio.Writer
	tmp []byte // one line, reused under mu

	stop chan struct{}
	wg   sync.WaitGroup
}

const accessLogFlush = 500 * time.Millisecond

// Access log formats.
const (
	AccessLogCommon = "common"
	AccessLogJSON   = "json"
)

// OpenAccessLog returns an access log writing to stream when dest is
// "stderr" (or "-"), else appending to the file dest (created 0640 if
// missing). format is AccessLogCommon or AccessLogJSON. It fails when the
// format is unknown or the file cannot be opened.
func OpenAccessLog(dest, format string, stream io.Writer) (*AccessLog, error) {
	a := &AccessLog{stop: make(chan struct{})}
	switch format {
	case AccessLogCommon, "":
	case AccessLogJSON:
		a.json = true
	default:
		return nil, fmt.Errorf("access log format %q: want common or json", format)
	}
	if dest == "stderr" || dest == "-" {
		a.out = stream
	} else {
		a.path = dest
		f, err := openAppend(dest)
		if err != nil {
			return nil, err
		}
		a.f, a.out = f, f
	}
	a.buf = bufio.NewWriterSize(a.out, 64<<10)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(accessLogFlush)
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-t.C:
				a.mu.Lock()
				_ = a.buf.Flush()
				a.mu.Unlock()
			}
		}
	}()
	return a, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return f, nil
}

// Reopen flushes what is buffered to the current file, then opens the path
// again (a new file if logrotate moved the old one away). A stream access
// log has nothing to reopen. On failure the old file stays in use.
func (a *AccessLog) Reopen() error {
	if a.path == "" {
		return nil
	}
	f, err := openAppend(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	_ = a.buf.Flush()
	old := a.f
	a.f, a.out = f, f
	a.buf.Reset(f)
	a.mu.Unlock()
	return old.Close()
}

// Close flushes and closes the access log.
func (a *AccessLog) Close() error {
	close(a.stop)
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.buf.Flush()
	if a.f != nil {
		if cerr := a.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// log writes the line of one finished request.
func (a *AccessLog) log(r *http.Request, rec *statusRecorder, start time.Time, outcome string) {
	end := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.tmp[:0]
	if a.json {
		b = appendJSONLine(b, r, rec, start, end, outcome)
	} else {
		b = appendCommonLine(b, r, rec, start)
	}
	a.tmp = b
	_, _ = a.buf.Write(b)
}

// appendCommonLine appends the NCSA common log format:
// host - - [day/Mon/year:hh:mm:ss zone] "METHOD URI PROTO" status bytes
func appendCommonLine(b []byte, r *http.Request, rec *statusRecorder, start time.Time) []byte {
	b = appendEscaped(b, remoteHost(r.RemoteAddr))
	b = append(b, " - - ["...)
	b = start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, `] "`...)
	b = appendEscaped(b, r.Method)
	b = append(b, ' ')
	b = appendEscaped(b, requestURI(r))
	b = append(b, ' ')
	b = appendEscaped(b, r.Proto)
	b = append(b, `" `...)
	if rec.status == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, int64(rec.status), 10)
	}
	b = append(b, ' ')
	if rec.bytes == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, rec.bytes, 10)
	}
	return append(b, '\n')
}

// appendJSONLine appends one JSON object: time, remote, method, uri, proto,
// host, status (0 when no response was written), bytes, duration_ms,
// outcome (as zdqueue_requests_total's label).
func appendJSONLine(b []byte, r *http.Request, rec *statusRecorder, start, end time.Time, outcome string) []byte {
	b = append(b, `{"time":"`...)
	b = start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","remote":`...)
	b = appendJSONString(b, r.RemoteAddr)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, requestURI(r))
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, r.Proto)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, r.Host)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(rec.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, rec.bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(end.Sub(start).Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, outcome)
	return append(b, "}\n"...)
}

func requestURI(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// remoteHost is the client's IP, or "-" (unix sockets have no address).
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	if addr == "" || addr == "@" {
		return "-"
	}
	return addr
}

// appendEscaped appends s with '"', '\\', control bytes and bytes outside
// printable ASCII as \xHH, so a client cannot forge lines or fields.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// statusRecorder notes the status and body bytes of a response for the
// access log. It passes everything on, including the optional interfaces
// the proxy's own writers have (Unwrap serves http.ResponseController).
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) WriteString(str string) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := io.WriteString(s.ResponseWriter, str)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) watchClient() { watchClient(s.ResponseWriter) }

// upstreamRecorder is a statusRecorder over a writer that can send the
// backend's header fields without a copy.
type upstreamRecorder struct{ *statusRecorder }

func (u upstreamRecorder) useUpstreamHeader(h http.Header) {
	u.ResponseWriter.(upstreamHeaderWriter).useUpstreamHeader(h)
}

func (u upstreamRecorder) releaseUpstreamHeader() {
	u.ResponseWriter.(upstreamHeaderWriter).releaseUpstreamHeader()
}

var _ upstreamHeaderWriter = upstreamRecorder{}

// record wraps w for the access log.
func record(w http.ResponseWriter) (http.ResponseWriter, *statusRecorder) {
	rec := &statusRecorder{ResponseWriter: w}
	if _, ok := w.(upstreamHeaderWriter); ok {
		return upstreamRecorder{rec}, rec
	}
	return rec, rec
}
