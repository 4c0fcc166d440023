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

// writeRequest writes out to w in HTTP/1.1 wire format: request line,
// Host, the headers as they are (no sorting, no defaults added), then the
// body with Content-Length when known, else chunked with any trailers.
// It is net/http's Request.Write without the parts a proxy does not need;
// the method and header names were checked by the server that parsed them.
func writeRequest(w *bufio.Writer, out *http.Request) error {
	uri := out.URL.RequestURI()
	w.WriteString(out.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(out.Host)
	w.WriteString("\r\n")
	for k, vv := range out.Header {
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" || k == "Trailer" {
			continue
		}
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
	}
	switch {
	case out.Body == nil:
		if methodWantsLength(out.Method) {
			w.WriteString("Content-Length: 0\r\n")
		}
		_, err := w.WriteString("\r\n")
		return err
	case out.ContentLength >= 0:
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(out.ContentLength, 10))
		w.WriteString("\r\n\r\n")
		n, err := io.Copy(w, io.LimitReader(out.Body, out.ContentLength))
		if err != nil {
			return fmt.Errorf("send request body: %w", err)
		}
		if n != out.ContentLength {
			return fmt.Errorf("request body ended after %d of %d bytes", n, out.ContentLength)
		}
		return nil
	}
	if len(out.Trailer) > 0 {
		keys := make([]string, 0, len(out.Trailer))
		for k := range out.Trailer {
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
		n, err := out.Body.Read(buf)
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
	for k, vv := range out.Trailer {
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
