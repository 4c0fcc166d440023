package proxy

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// The cases h2spec found (RFC 9113 sections 4.2, 5.1, 5.3.1, 6.1, 6.8),
// each checked on its own, so a regression shows without running h2spec.

// A frame larger than the protocol's default 16 KiB is a FRAME_SIZE_ERROR:
// the server never offers more.
func TestH2FrameSizeIsTheDefault(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	r := dialRawH2(t, px.addr)
	f, err := r.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v; want SETTINGS", f)
	}
	if v, ok := sf.Value(http2.SettingMaxFrameSize); ok && v != 16384 {
		t.Errorf("SETTINGS_MAX_FRAME_SIZE %d; want none or 16384", v)
	}
	block := r.block(append(rawGET, "x-a", strings.Repeat("|", 17000))...) // '|' is sent raw
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true})
	if got := r.until(t, 1); !slices.Equal(got, []string{"GOAWAY FRAME_SIZE_ERROR"}) {
		t.Errorf("a %d-byte HEADERS frame: got %v; want GOAWAY(FRAME_SIZE_ERROR)", len(block), got)
	}
}

// After the client's RST_STREAM, its DATA or HEADERS on the stream is a
// stream error STREAM_CLOSED, also while the handler is still running.
func TestH2FramesAfterClientReset(t *testing.T) {
	dir := sockDir(t)
	g := newGate()
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			g.wait()
		}
		io.Copy(io.Discard, r.Body)
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	t.Cleanup(g.open)
	post := []string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/hold"}

	r := dialRawH2(t, px.addr)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(post...), EndHeaders: true})
	r.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	r.fr.WriteData(1, true, []byte("late"))
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
	got := r.until(t, 3)
	for _, want := range []string{"RST 1 STREAM_CLOSED", "200 on 3"} {
		if !slices.Contains(got, want) {
			t.Errorf("DATA after RST_STREAM: got %v; want %q among them", got, want)
		}
	}

	// HEADERS: a stream error while the handler runs, a connection error
	// (a closed stream's HEADERS, section 5.1) once it is done; which one
	// depends on how fast the handler notices.
	r = dialRawH2(t, px.addr)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(post...), EndHeaders: true})
	r.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block("x-t", "v"), EndStream: true, EndHeaders: true})
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
	got = r.until(t, 3)
	if !slices.Contains(got, "RST 1 STREAM_CLOSED") && !slices.Equal(got, []string{"GOAWAY STREAM_CLOSED"}) {
		t.Errorf("HEADERS after RST_STREAM: got %v; want RST_STREAM or GOAWAY (STREAM_CLOSED)", got)
	}
}

// DATA on a stream that is closed (answered, END_STREAM both ways) is a
// stream error STREAM_CLOSED; DATA on a stream the server reset is the
// client's in flight, and ignored.
func TestH2DataOnClosedStream(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	r := dialRawH2(t, px.addr)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
	untilEnd(t, r, 1)
	r.fr.WriteData(1, true, []byte("late"))
	// Stream 3 is reset by the server: its body is longer than its
	// content-length.
	post := []string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/", "content-length", "1"}
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: r.block(post...), EndHeaders: true})
	r.fr.WriteData(3, false, []byte("abc"))
	r.fr.WriteData(3, true, []byte("def"))
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
	got := r.until(t, 5)
	want := []string{"RST 1 STREAM_CLOSED", "RST 3 PROTOCOL_ERROR", "200 on 5"}
	for _, s := range got {
		if strings.HasPrefix(s, "RST") && !slices.Contains(want, s) {
			t.Errorf("got %v: %q answers a frame that is to be ignored", got, s)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("got %v; want %q among them", got, w)
		}
	}
}

// untilEnd reads frames until stream id has ended (END_STREAM on its
// HEADERS or DATA).
func untilEnd(t *testing.T, r *rawH2, id uint32) {
	t.Helper()
	for range 100 {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && f.StreamEnded() {
				return
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("stream %d: %v", id, f)
		}
	}
	t.Fatalf("stream %d did not end", id)
}

// A stream cannot depend on itself: HEADERS or PRIORITY saying so is a
// stream error PROTOCOL_ERROR; the connection goes on.
func TestH2SelfDependency(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	r := dialRawH2(t, px.addr)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true,
		Priority: http2.PriorityParam{StreamDep: 1, Weight: 15}})
	r.fr.WritePriority(3, http2.PriorityParam{StreamDep: 3, Weight: 15})
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
	got := r.until(t, 5)
	for _, want := range []string{"RST 1 PROTOCOL_ERROR", "RST 3 PROTOCOL_ERROR", "200 on 5"} {
		if !slices.Contains(got, want) {
			t.Errorf("got %v; want %q among them", got, want)
		}
	}
	if n := be.hits.Load(); n != 1 {
		t.Errorf("backend saw %d requests; want only stream 5's", n)
	}
}

// A client's GOAWAY, with nothing open, is answered with GOAWAY and an
// orderly close: a PING sent behind it must not turn the close into a
// reset (which can destroy what the client has not read yet).
func TestH2ClientGoAway(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	for i := range 20 { // the reset was a race: try it a few times
		r := dialRawH2(t, px.addr)
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
		untilEnd(t, r, 1)
		r.fr.WriteGoAway(1, http2.ErrCodeNo, nil)
		r.fr.WritePing(false, [8]byte{'z', 'd'})
		var got []string
		for {
			f, err := r.fr.ReadFrame()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					got = append(got, "read error: "+err.Error())
				}
				break
			}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				got = append(got, "GOAWAY "+f.ErrCode.String())
			case *http2.PingFrame:
				// Answered before the GOAWAY was taken in: fine.
			default:
				got = append(got, "unexpected frame "+f.Header().Type.String())
			}
		}
		if !slices.Equal(got, []string{"GOAWAY NO_ERROR"}) {
			t.Fatalf("try %d: after the client's GOAWAY: %v; want GOAWAY(NO_ERROR), then the end of the stream", i, got)
		}
	}
}
