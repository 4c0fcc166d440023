package wsrelay

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/flate"
)

// permessage-deflate (RFC 7692) towards the client is the relay's own: the
// compression context lives in zd-queue, so a backend change never breaks
// it. Both directions run without context takeover, so an idle session
// keeps no compressor or decompressor state at all; pooled coders are reset
// per message.

// deflateParams is the negotiated configuration.
type deflateParams struct {
	serverWindowBits int // our compressor's window, 8-15
}

// negotiateDeflate picks the first acceptable permessage-deflate offer in
// the client's Sec-WebSocket-Extensions values and returns the response
// extension and our parameters. ok is false when the client offered none
// that is valid (the session then runs uncompressed; RFC 7692 section 5
// lets a server decline).
func negotiateDeflate(values []string) (resp string, p deflateParams, ok bool) {
	for _, v := range values {
		for _, offer := range splitTopLevel(v, ',') {
			params := splitTopLevel(offer, ';')
			if len(params) == 0 || !strings.EqualFold(strings.TrimSpace(params[0]), "permessage-deflate") {
				continue
			}
			if r, p, ok := acceptOffer(params[1:]); ok {
				return r, p, true
			}
		}
	}
	return "", deflateParams{}, false
}

// acceptOffer checks one offer's parameters (section 7.1): each at most
// once, known names only, window bits 8-15. The response always carries
// server_no_context_takeover and client_no_context_takeover (a server may
// send both unasked: 7.1.1.1 and 7.1.1.2).
func acceptOffer(params []string) (string, deflateParams, bool) {
	p := deflateParams{serverWindowBits: 15}
	seen := map[string]bool{}
	for _, raw := range params {
		name, val, hasVal := strings.Cut(strings.TrimSpace(raw), "=")
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if seen[name] {
			return "", p, false
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasVal {
				return "", p, false
			}
		case "server_max_window_bits":
			bits, err := strconv.Atoi(val)
			if !hasVal || err != nil || bits < 8 || bits > 15 || len(val) > 2 {
				return "", p, false
			}
			p.serverWindowBits = bits
		case "client_max_window_bits":
			if hasVal {
				bits, err := strconv.Atoi(val)
				if err != nil || bits < 8 || bits > 15 || len(val) > 2 {
					return "", p, false
				}
			}
			// We reset per message (client_no_context_takeover) and can
			// inflate any window, so we leave the client's window as it is.
		default:
			return "", p, false
		}
	}
	resp := "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	if seen["server_max_window_bits"] {
		resp += "; server_max_window_bits=" + strconv.Itoa(p.serverWindowBits)
	}
	return resp, p, true
}

// splitTopLevel splits s at sep outside double quotes and drops empty
// elements.
func splitTopLevel(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] == '"' {
			quoted = !quoted
		}
		if i == len(s) || (s[i] == sep && !quoted) {
			if part := strings.TrimSpace(s[start:i]); part != "" {
				out = append(out, part)
			}
			start = i + 1
		}
	}
	return out
}

// deflateTail ends a message's compressed data (section 7.2.2) and then a
// final empty stored block, so the inflater reaches a clean EOF.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

type inflater struct {
	src  bytes.Reader
	tail bytes.Reader
	mr   io.Reader
	fr   io.ReadCloser
}

var inflaters = sync.Pool{New: func() any {
	f := &inflater{}
	f.mr = io.MultiReader(&f.src, &f.tail)
	f.fr = flate.NewReader(f.mr)
	return f
}}

// inflate decompresses one message into dst, failing with 1009 past limit
// bytes (a compression bomb ends there) and with 1007 on corrupt data.
func inflate(dst *[]byte, src []byte, limit int64) error {
	f := inflaters.Get().(*inflater)
	defer inflaters.Put(f)
	f.src.Reset(src)
	f.tail.Reset(deflateTail)
	f.mr = io.MultiReader(&f.src, &f.tail)
	if err := f.fr.(flate.Resetter).Reset(f.mr, nil); err != nil {
		return err
	}
	b := (*dst)[:0]
	for idle := 0; ; {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.fr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			*dst = b
			return &CloseError{CloseTooBig, "message over " + strconv.FormatInt(limit, 10) + " bytes once inflated"}
		}
		if errors.Is(err, io.EOF) {
			*dst = b
			return nil
		}
		if err != nil {
			*dst = b
			return &CloseError{CloseInvalidPayload, "compressed message does not inflate: " + err.Error()}
		}
		if n == 0 {
			if idle++; idle > 100 {
				*dst = b
				return &CloseError{CloseInvalidPayload, "compressed message does not inflate: no progress"}
			}
		}
	}
}

// deflaters holds one pool per window size (index = window bits).
var deflaters [16]sync.Pool

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

type deflater struct {
	out sliceWriter
	fw  *flate.Writer
}

// deflateAppend appends the compressed form of p (without the 4 trailing
// sync bytes, section 7.2.1) to dst.
func deflateAppend(dst, p []byte, windowBits int) []byte {
	d, _ := deflaters[windowBits].Get().(*deflater)
	if d == nil {
		d = &deflater{}
		var err error
		if windowBits >= 15 {
			d.fw, err = flate.NewWriter(&d.out, flate.BestSpeed)
		} else {
			d.fw, err = flate.NewWriterWindow(&d.out, 1<<windowBits)
		}
		if err != nil {
			panic("wsrelay: flate writer: " + err.Error()) // constant arguments: cannot happen
		}
	}
	d.out.b = dst
	d.fw.Reset(&d.out)
	d.fw.Write(p)
	d.fw.Flush()
	out := d.out.b
	if n := len(out); n >= 4 && out[n-4] == 0 && out[n-3] == 0 && out[n-2] == 0xff && out[n-1] == 0xff {
		out = out[:n-4]
	}
	d.out.b = nil
	deflaters[windowBits].Put(d)
	return out
}
