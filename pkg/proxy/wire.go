package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// writeRequest writes the backend request for r to w in HTTP/1.1 wire
// format: the request line with uri, Host, r's end-to-end fields as they
// are (no sorting, no defaults added; hop-by-hop fields, those Connection
// names, and Expect left out), X-Forwarded-For, -Proto and -Host, then the
// body with Content-Length when its size is known, else chunked with any
// trailers. It reads r and writes straight to the buffer: no request copy.
// The method and header names were checked by the server that parsed them.
func writeRequest(w *bufio.Writer, r *http.Request, uri string, body *reqBody) error {
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(r.Host)
	w.WriteString("\r\n")
	conn := connectionListed(r.Header["Connection"])
	for k, vv := range r.Header {
		if skipForward(k) || (conn != nil && conn[k]) {
			continue
		}
		if err := writeField(w, k, vv); err != nil {
			return err
		}
	}
	// "TE: trailers" is the one TE value that stays meaningful end to end:
	// it tells the backend the client accepts trailers (gRPC needs it).
	if te := r.Header["Te"]; len(te) > 0 && httpguts.HeaderValuesContainsToken(te, "trailers") {
		w.WriteString("Te: trailers\r\n")
	}
	if err := writeForwarded(w, r); err != nil {
		return err
	}
	if up, ok := isUpgrade(r); ok {
		if !httpguts.ValidHeaderFieldValue(up) {
			return errors.New("invalid value for header Upgrade")
		}
		w.WriteString("Connection: Upgrade\r\nUpgrade: ")
		w.WriteString(up)
		w.WriteString("\r\n")
	}
	rc := body.reader()
	length := body.size
	if body.held != nil {
		length = int64(len(body.held))
	}
	var trailer http.Header
	if rc != nil && length < 0 {
		trailer = r.Trailer
	}
	return writeBody(w, r.Method, rc, length, trailer)
}

// skipForward reports whether a request field is never passed on as it
// came: hop-by-hop fields, Expect (the 100 is ours to send), the fields
// writeRequest writes itself.
func skipForward(k string) bool {
	switch k {
	case "Host", "Content-Length", "Expect", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host":
		return true
	}
	return isHop(k)
}

// writeField writes the values of one field.
func writeField(w *bufio.Writer, k string, vv []string) error {
	for _, v := range vv {
		if v == "" && k == "User-Agent" {
			continue
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return fmt.Errorf("invalid value for header %s", k)
		}
		w.WriteString(k)
		w.WriteString(": ")
		w.WriteString(v)
		w.WriteString("\r\n")
	}
	return nil
}

// writeForwarded writes X-Forwarded-For (the client's address appended to
// any the client sent; a unix-socket client has no IP, so none is made up
// and the client's list passes as it is), X-Forwarded-Proto (replacing the
// client's) and X-Forwarded-Host (the Host the client asked for).
func writeForwarded(w *bufio.Writer, r *http.Request) error {
	prior := r.Header["X-Forwarded-For"]
	if ip, ok := remoteIP(r.RemoteAddr); ok {
		w.WriteString("X-Forwarded-For: ")
		for _, v := range prior {
			if !httpguts.ValidHeaderFieldValue(v) {
				return errors.New("invalid value for header X-Forwarded-For")
			}
			w.WriteString(v)
			w.WriteString(", ")
		}
		w.WriteString(ip)
		w.WriteString("\r\n")
	} else if err := writeField(w, "X-Forwarded-For", prior); err != nil {
		return err
	}
	if r.TLS != nil || r.ProtoMajor == 3 {
		w.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		w.WriteString("X-Forwarded-Proto: http\r\n")
	}
	if r.Host != "" {
		w.WriteString("X-Forwarded-Host: ")
		w.WriteString(r.Host)
		w.WriteString("\r\n")
		return nil
	}
	return writeField(w, "X-Forwarded-Host", r.Header["X-Forwarded-Host"])
}

// writeBody ends the head with the body's framing and writes the body:
// Content-Length when length is known, else chunked (streamed chunk by
// chunk, with trailer), nothing at all for no body (Content-Length: 0 for
// the methods that expect one).
func writeBody(w *bufio.Writer, method string, body io.Reader, length int64, trailer http.Header) error {
	switch {
	case body == nil:
		if methodWantsLength(method) {
			w.WriteString("Content-Length: 0\r\n")
		}
		_, err := w.WriteString("\r\n")
		return err
	case length >= 0:
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), length, 10))
		w.WriteString("\r\n\r\n")
		n, err := w.ReadFrom(io.LimitReader(body, length))
		if err != nil {
			return fmt.Errorf("send request body: %w", err)
		}
		if n != length {
			return fmt.Errorf("request body ended after %d of %d bytes", n, length)
		}
		return nil
	}
	if len(trailer) > 0 {
		keys := make([]string, 0, len(trailer))
		for k := range trailer {
			keys = append(keys, k)
		}
		w.WriteString("Trailer: ")
		w.WriteString(strings.Join(keys, ","))
		w.WriteString("\r\n")
	}
	w.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			w.WriteString(strconv.FormatInt(int64(n), 16))
			w.WriteString("\r\n")
			w.Write(buf[:n])
			if _, werr := w.WriteString("\r\n"); werr != nil {
				return werr
			}
			// Stream: the backend may answer part by part.
			if ferr := w.Flush(); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("send request body: %w", err)
		}
	}
	w.WriteString("0\r\n")
	for k, vv := range trailer {
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	_, err := w.WriteString("\r\n")
	return err
}

// methodWantsLength reports whether a bodiless request of this method
// should still say Content-Length: 0 (as net/http does for POST, PUT, PATCH).
func methodWantsLength(m string) bool {
	return m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch
}
