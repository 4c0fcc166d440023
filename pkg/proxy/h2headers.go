package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 header blocks: reading HEADERS and CONTINUATION into a block
// (HPACK decoding and its bounds), building a request from it, trailers,
// and the mapping between wire and canonical field names.

// onBlockFragment decodes a piece of the header block being read; the
// last one acts on the whole block. As x/net's Framer does in its own way,
// it ends the connection when the block grows past four times the size
// limit (a block over the limit by a little still gets its 431, also in
// 16 KiB frames), or keeps coming after it held an invalid field:
// decoding what will be thrown away is work a peer could make us do
// without end.
func (c *h2conn) onBlockFragment(frag []byte, ended bool) error {
	b := &c.blk
	if err := b.decode(c.hdec, frag, ended); err != nil || !ended {
		return err
	}
	defer func() { b.id = 0 }() // no block open until the next HEADERS
	switch {
	case b.selfDep:
		c.refuseBlock(b.id, "h2_protocol")
		return nil
	case b.invalid != nil:
		// A malformed request (RFC 9113 section 8.1.1).
		c.refuseBlock(b.id, "malformed")
		return nil
	}
	return c.onHeaders(b)
}

// refuseBlock resets the stream whose header block was refused, counted as
// bad input of the given kind. The stream counts as opened (and closed), so
// that its late frames are not taken for a protocol error.
func (c *h2conn) refuseBlock(id uint32, kind string) {
	c.p.m.badInput.WithLabelValues(kind).Inc()
	c.smu.Lock()
	if id%2 == 1 && id > c.maxID {
		c.maxID = id
	}
	c.smu.Unlock()
	c.resetStream(id, http2.ErrCodeProtocol)
}

// h2block is the header block being read (RFC 9113 section 4.3), its
// fields as HPACK decodes them. The read loop reuses it for every block:
// newRequest copies out what it keeps.
type h2block struct {
	id        uint32
	endStream bool
	fields    []hpack.HeaderField
	max       uint32 // MaxHeaderBytes, counted as HPACK does (RFC 7541 section 4.1)
	size      uint32
	truncated bool  // over max: the fields are dropped, the request gets 431
	invalid   error // a field no request may carry: the stream is reset
	regular   bool  // a regular field was seen (pseudo-headers come first)
	selfDep   bool  // the HEADERS made the stream depend on itself
	wire      int64 // bytes of the block's fragments so far
}

// decode takes one fragment of the block through dec (whose emit function
// is b.emit), ended when it is the last; the error is the connection
// error to answer with.
func (b *h2block) decode(dec *hpack.Decoder, frag []byte, ended bool) error {
	b.wire += int64(len(frag))
	if b.id == 0 || b.wire > 4*int64(b.max) || (b.invalid != nil && !ended) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if _, err := dec.Write(frag); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	if ended {
		if err := dec.Close(); err != nil {
			return http2.ConnectionError(http2.ErrCodeCompression)
		}
	}
	return nil
}

func (b *h2block) start(id uint32, endStream bool) {
	clear(b.fields)
	*b = h2block{id: id, endStream: endStream, fields: b.fields[:0], max: b.max}
}

// emit takes one decoded field. Fields after the block went bad are
// decoded (the dynamic table must stay in step) and dropped.
func (b *h2block) emit(hf hpack.HeaderField) {
	if b.truncated || b.invalid != nil {
		return
	}
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		b.invalid = errors.New("invalid value for field " + strconv.Quote(hf.Name))
		return
	}
	if strings.HasPrefix(hf.Name, ":") {
		if b.regular {
			b.invalid = errors.New("pseudo-header after a regular field")
			return
		}
	} else {
		b.regular = true
		if !validWireName(hf.Name) {
			b.invalid = errors.New("invalid field name " + strconv.Quote(hf.Name))
			return
		}
	}
	if size := hf.Size(); size > b.max-b.size {
		b.truncated = true
		b.size = b.max
		clear(b.fields)
		b.fields = b.fields[:0]
		return
	} else {
		b.size += size
	}
	b.fields = append(b.fields, hf)
}

// onHeaders starts a stream, or takes a request's trailers.
func (c *h2conn) onHeaders(f *h2block) error {
	id := f.id
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.smu.Lock()
	if st := c.streams[id]; st != nil {
		c.smu.Unlock()
		if st.peerReset.Load() {
			// HEADERS after the client's RST_STREAM (RFC 9113 section 5.1).
			c.resetStream(id, http2.ErrCodeStreamClosed)
			return nil
		}
		// Trailers: they end the body.
		if st.remoteEnd.Load() || !f.endStream {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if len(f.fields) > 0 && strings.HasPrefix(f.fields[0].Name, ":") {
			// Pseudo-headers come first, and none may be in trailers: a
			// malformed request (RFC 9113 section 8.1).
			c.p.m.badInput.WithLabelValues("malformed").Inc()
			c.resetStream(id, http2.ErrCodeProtocol)
			return nil
		}
		st.trailers(f)
		return nil
	}
	if id <= c.maxID {
		late := c.lateFrameLocked(id)
		c.smu.Unlock()
		if late {
			return nil // trailers of a stream we reset, or one GOAWAY did not take
		}
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	c.maxID = id
	if c.goAway {
		c.smu.Unlock()
		return nil // after GOAWAY new streams are ignored (RFC 9113 section 6.8)
	}
	if len(c.streams) >= h2MaxStreams {
		c.smu.Unlock()
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	st := &h2stream{c: c, id: id, declared: -1}
	st.recvWin.Store(h2StreamWindow)
	st.bcond.L = &st.bmu
	c.fmu.Lock()
	st.sendWin = c.initSendWin
	c.fmu.Unlock()
	c.streams[id] = st
	if c.active.Add(1) == 1 {
		// The first open stream: the connection is active; its since is
		// the stream's start (see run).
		c.hc.state.Store(connActive)
		st.opens = true
	}
	c.smu.Unlock()

	if f.truncated {
		// Larger than MaxHeaderBytes: 431, as for HTTP/1.1.
		st.remoteEnd.Store(f.endStream)
		st.bodyErr = io.EOF
		c.handlers.Add(1)
		go st.refuse(http.StatusRequestHeaderFieldsTooLarge)
		return nil
	}
	req, err := c.newRequest(st, f)
	if err != nil {
		c.p.m.badInput.WithLabelValues("malformed").Inc()
		c.finishStream(st)
		c.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	st.req = req
	st.w = h2writer{st: st, length: -1}
	c.handlers.Add(1)
	c.p.spawn(st)
	return nil
}

// newRequest builds the request of a HEADERS frame (RFC 9113 section 8.3).
func (c *h2conn) newRequest(st *h2stream, f *h2block) (*http.Request, error) {
	var method, path, scheme, authority, protocol string
	var seen uint8
	npseudo := 0
	for _, hf := range f.fields {
		var bit uint8
		switch hf.Name {
		case ":method":
			method, bit = hf.Value, 1
		case ":path":
			path, bit = hf.Value, 2
		case ":scheme":
			scheme, bit = hf.Value, 4
		case ":authority":
			authority, bit = hf.Value, 8
		case ":protocol":
			protocol, bit = hf.Value, 16
		default:
			if strings.HasPrefix(hf.Name, ":") {
				return nil, errors.New("unsupported pseudo-header " + hf.Name)
			}
		}
		if bit == 0 {
			break // the regular fields start here
		}
		if seen&bit != 0 {
			return nil, errors.New("duplicate pseudo-header " + hf.Name)
		}
		seen |= bit
		npseudo++
	}
	if seen&16 != 0 {
		// An extended CONNECT (RFC 8441 section 4): CONNECT with all of
		// :scheme, :path and :authority; :protocol on any other method
		// is malformed. A plain CONNECT (no :protocol) stays refused
		// below: zd-queue is no forward proxy. One that ends the stream
		// at once could carry nothing: malformed too.
		if method != http.MethodConnect || scheme == "" || path == "" || path[0] != '/' ||
			seen&8 == 0 || authority == "" || !validToken([]byte(protocol)) || f.endStream {
			return nil, errors.New("malformed extended CONNECT")
		}
	} else if method == "" || !validToken([]byte(method)) || method == http.MethodConnect || scheme == "" || path == "" ||
		(path[0] != '/' && !(path == "*" && method == http.MethodOptions)) {
		return nil, errors.New("malformed pseudo-headers")
	}
	regular := f.fields[npseudo:]
	h := make(http.Header, len(regular))
	vals := make([]string, len(regular))
	length := int64(-1)
	for i, hf := range regular {
		if !validWireName(hf.Name) {
			return nil, errors.New("invalid field name")
		}
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return nil, errors.New("connection-specific field " + hf.Name)
		case "te":
			if hf.Value != "trailers" {
				return nil, errors.New("te other than trailers")
			}
		case "host":
			if authority == "" {
				authority = hf.Value
			}
		case "content-length":
			n, err := strconv.ParseUint(hf.Value, 10, 63)
			if err != nil || (length >= 0 && int64(n) != length) {
				return nil, errors.New("bad content-length")
			}
			length = int64(n)
		}
		k := canonicalH2(hf.Name)
		vals[i] = hf.Value
		if prior, ok := h[k]; ok {
			h[k] = append(prior, hf.Value)
		} else {
			h[k] = vals[i : i+1 : i+1]
		}
	}
	if authority != "" && !httpguts.ValidHostHeader(authority) {
		return nil, errors.New("bad authority")
	}
	delete(h, "Host")
	if protocol != "" {
		if length >= 0 {
			return nil, errors.New("content-length on an extended CONNECT")
		}
		// Where net/http's HTTP/2 server puts it too (handle looks there).
		h[":protocol"] = []string{protocol}
	}
	u := &url.URL{}
	if path == "*" {
		u.Path = "*"
	} else {
		pathPart, query, _ := strings.Cut(path, "?")
		plain := true
		for i := 0; i < len(pathPart); i++ {
			if b := pathPart[i]; !plainPathByte[b] {
				plain = false
				break
			}
		}
		for i := 0; i < len(path); i++ {
			if b := path[i]; b <= ' ' || b >= 0x7f {
				return nil, errors.New("bad path")
			}
		}
		if plain {
			u.Path, u.RawQuery = pathPart, query
		} else {
			pu, err := url.ParseRequestURI(path)
			if err != nil {
				return nil, err
			}
			u = pu
		}
	}
	st.url = *u
	r := (&http.Request{
		Method:     method,
		URL:        &st.url,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       authority,
		RemoteAddr: c.remote,
		RequestURI: path,
		TLS:        c.tls,
	}).WithContext(st)
	if f.endStream {
		st.remoteEnd.Store(true)
		st.bodyErr = io.EOF
		r.Body = http.NoBody
		r.ContentLength = 0
		if length > 0 {
			return nil, errors.New("content-length without a body")
		}
	} else {
		st.declared = length
		r.ContentLength = length
		for _, v := range h["Trailer"] {
			for k := range strings.SplitSeq(v, ",") {
				if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
					if r.Trailer == nil {
						r.Trailer = http.Header{}
						st.trailerKeys = map[string]bool{}
					}
					r.Trailer[k] = nil
					st.trailerKeys[k] = true
				}
			}
		}
		st.body.st = st
		r.Body = &st.body
	}
	return r, nil
}

// validWireName reports whether name is a field name as HTTP/2 carries
// it: a token in lower case (RFC 9113 section 8.2.1). The Framer checks
// this too; the request builder does not rely on it.
func validWireName(name string) bool {
	if !httpguts.ValidHeaderFieldName(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// trailers ends a request body with its trailer fields. Only fields the
// request announced in its Trailer header are kept (as net/http does):
// their keys are in Request.Trailer from the start; the body reader puts
// the values there when it reports the end of the body (on the handler's
// goroutine, the only one that touches the map).
func (st *h2stream) trailers(f *h2block) {
	st.remoteEnd.Store(true)
	st.bmu.Lock()
	if st.trailerKeys != nil {
		for _, hf := range f.fields {
			k := canonicalH2(hf.Name)
			if st.trailerKeys[k] && httpguts.ValidTrailerHeader(k) {
				if st.trailerVals == nil {
					st.trailerVals = http.Header{}
				}
				st.trailerVals[k] = append(st.trailerVals[k], hf.Value)
			}
		}
	}
	if st.bodyErr == nil {
		st.bodyErr = io.EOF
	}
	st.bcond.Broadcast()
	st.bmu.Unlock()
}

// isH2ConnectionField reports the fields HTTP/2 forbids (RFC 9113
// section 8.2.2); the proxy never sends them on.
func isH2ConnectionField(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// h2Common maps the lowercase wire names of common fields to their
// canonical form and back, so most fields cost no allocation either way.
var h2Common = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Origin", "Age", "Alt-Svc", "Authorization", "Cache-Control",
		"Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag", "Expect",
		"Expires", "From", "Host", "If-Match", "If-Modified-Since", "If-None-Match",
		"If-Range", "If-Unmodified-Since", "Last-Modified", "Link", "Location", "Max-Forwards",
		"Origin", "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Range", "Referer",
		"Refresh", "Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security", "Te",
		"Trailer", "User-Agent", "Vary", "Via", "Www-Authenticate", "X-Content-Type-Options",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Priority", "X-Request-Id",
		"Zd-Backend", "Cache-Status", "Early-Data",
	} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// h2WireName is a header key's HTTP/2 form: its lowercase name and that
// name's index in the HPACK static table (0 if none).
type h2WireName struct {
	name   string
	static uint8
}

// h2Wire maps the canonical keys of common fields, and of every name in
// the static table, to their wire form.
var h2Wire = func() map[string]h2WireName {
	m := map[string]h2WireName{}
	for low, k := range h2Common {
		m[k] = h2WireName{low, hpackStaticName[low]}
	}
	for low, idx := range hpackStaticName {
		if low[0] != ':' {
			m[http.CanonicalHeaderKey(low)] = h2WireName{low, idx}
		}
	}
	return m
}()

// canonicalH2 returns the canonical key of a lowercase wire field name.
func canonicalH2(name string) string {
	if k, ok := h2Common[name]; ok {
		return k
	}
	return http.CanonicalHeaderKey(name)
}

// wireH2 returns the wire form of a header key.
func wireH2(k string) h2WireName {
	if w, ok := h2Wire[k]; ok {
		return w
	}
	low := strings.ToLower(k)
	return h2WireName{low, hpackStaticName[low]}
}
