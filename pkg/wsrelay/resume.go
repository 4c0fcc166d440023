package wsrelay

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// Resumption: the client's side of the contract (docs/websocket.md has it
// for app authors).
//
// A client asks for a resumable session by offering, among its
// subprotocols, the token
//
//	zd-resume.SECRET          a new session
//	zd-resume.SECRET.RECEIVED a resume: RECEIVED backend messages seen so far
//
// SECRET is 16 to 64 random bytes the client chose, in unpadded base64url
// (22 to 86 characters); RECEIVED is a decimal count (at most 2^53-1, so a
// browser's numbers hold it). A subprotocol, not a query parameter or a
// field of its own, because a browser's WebSocket API sets only the URL and
// Sec-WebSocket-Protocol, and the URL ends up in access logs (zd-queue's
// own, and the app's: the backend gets the target as it is). The token is
// never forwarded to the backend and never logged.
//
// The first message such a client gets is zd-queue's answer, one text
// message of JSON, not counted in RECEIVED:
//
//	{"zd-resume":"new","have":0,"window":120}
//	{"zd-resume":"resumed","have":A,"replay":K}
//	{"zd-resume":"refused","reason":"expired","code":4408,"detail":"..."}
//
// "have" is how many of the client's messages zd-queue has (the client
// sends again only those after them); "replay" how many backend messages
// follow that the client missed. A refusal is the answer and then a Close
// with its code, over a completed handshake (101, or 200 on HTTP/2 and
// HTTP/3), because a browser cannot read the status of a failed handshake:
// the page sees only the Close code and reason. The handshake answer also
// carries Zd-Resume-Refused: REASON for clients that read fields.
//
// The handshake answer chooses the subprotocol the backend chose, or, when
// it chose none (and for every refusal), the client's own zd-resume token:
// a browser fails a handshake that offered subprotocols and got none back.

// Refusal reasons and the Close codes that carry them (a 4xxx code named
// after the HTTP status that means the same).
const (
	ResumeMalformed   = "malformed"   // 4400: the token is not SECRET or SECRET.RECEIVED as documented
	ResumeCredentials = "credentials" // 4403: Origin, Cookie or Authorization differ from the first handshake
	ResumeUnknown     = "unknown"     // 4404: no session has this secret (never had, or forgotten)
	ResumeSubprotocol = "subprotocol" // 4406: the offer lacks the subprotocol the session has
	ResumeExpired     = "expired"     // 4408: the client stayed away longer than the resume window
	ResumeConflict    = "conflict"    // 4409: a new session asked for a secret a live session has
	ResumeEnded       = "ended"       // 4410: the session ended while the client was away ("closed": the backend's code)
	ResumeGap         = "gap"         // 4416: messages the client missed are no longer held (the session ends)
	ResumeOff         = "off"         // 4501: this zd-queue does not resume sessions (--ws-resume-window 0)
	ResumeBusy        = "busy"        // 4503: the session's previous connection did not let go in time
)

var resumeCodes = map[string]uint16{
	ResumeMalformed: 4400, ResumeCredentials: 4403, ResumeUnknown: 4404,
	ResumeSubprotocol: 4406, ResumeExpired: 4408, ResumeConflict: 4409,
	ResumeEnded: 4410, ResumeGap: 4416, ResumeOff: 4501, ResumeBusy: 4503,
}

// ResumeCode is the Close code a refusal for reason carries (0 for an
// unknown reason).
func ResumeCode(reason string) uint16 { return resumeCodes[reason] }

const (
	resumePrefix    = "zd-resume."
	minSecretBytes  = 16
	maxSecretBytes  = 64
	maxResumeCount  = 1<<53 - 1
	resumeHeaderOut = "Zd-Resume-Refused"
)

// resumeToken is a decoded zd-resume subprotocol token.
type resumeToken struct {
	secret   []byte
	resume   bool   // SECRET.RECEIVED: come back to a session
	received uint64 // backend→client messages the client has
}

// String encodes t as the token it was read from.
func (t resumeToken) String() string {
	s := resumePrefix + base64.RawURLEncoding.EncodeToString(t.secret)
	if t.resume {
		s += "." + strconv.FormatUint(t.received, 10)
	}
	return s
}

// parseResumeOffer finds the zd-resume token among the subprotocols a
// client offered (the values of Sec-WebSocket-Protocol). found says one
// was there; rest are the other subprotocols, in order, for the backend.
// An error says what is wrong with the token (or that there were two).
func parseResumeOffer(values []string) (tok resumeToken, rest []string, found bool, err error) {
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if !strings.HasPrefix(p, resumePrefix) {
				rest = append(rest, p)
				continue
			}
			if found {
				return resumeToken{}, nil, true, errors.New("more than one zd-resume token offered")
			}
			found = true
			tok, err = parseResumeToken(p[len(resumePrefix):])
			if err != nil {
				return resumeToken{}, nil, true, err
			}
		}
	}
	return tok, rest, found, nil
}

func parseResumeToken(s string) (resumeToken, error) {
	var t resumeToken
	sec, count, hasCount := strings.Cut(s, ".")
	if len(sec) < 22 || len(sec) > 86 {
		return t, errors.New("zd-resume secret must be 16 to 64 bytes in unpadded base64url (22 to 86 characters)")
	}
	for i := 0; i < len(sec); i++ {
		// The decoder skips CR and LF; a secret has one spelling only.
		if c := sec[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return t, errors.New("zd-resume secret has a character outside base64url")
		}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(sec)
	if err != nil || len(raw) < minSecretBytes || len(raw) > maxSecretBytes {
		return t, errors.New("zd-resume secret is not unpadded base64url of 16 to 64 bytes")
	}
	t.secret = raw
	if !hasCount {
		return t, nil
	}
	n, err := strconv.ParseUint(count, 10, 64)
	if err != nil || n > maxResumeCount || (len(count) > 1 && count[0] == '0') || count[0] == '+' {
		return t, errors.New("zd-resume received count is not a decimal number up to 2^53-1")
	}
	t.resume, t.received = true, n
	return t, nil
}

// echoResumeToken makes the handshake answer choose the client's zd-resume
// token as its subprotocol when nothing else was chosen: browsers, Node's
// WebSocket and npm ws fail a handshake that offered subprotocols and got
// none back ("Server sent no subprotocol"), which would leave such a
// client a bare 1006 instead of its session, its answer or its refusal.
// The token goes back only to the client that sent it.
func echoResumeToken(resp, req http.Header) {
	if resp.Get("Sec-WebSocket-Protocol") != "" {
		return
	}
	for _, v := range req["Sec-Websocket-Protocol"] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); strings.HasPrefix(p, resumePrefix) {
				resp.Set("Sec-WebSocket-Protocol", p)
				return
			}
		}
	}
}

// secretKey is what the relay keeps of a secret: its SHA-256, so the
// secret itself is in no map, dump or log.
func secretKey(secret []byte) [32]byte { return sha256.Sum256(secret) }

// credentialHash digests what a resume must present again: Origin, Cookie
// and Authorization. Cookie fields are joined first (HTTP/2 and HTTP/3
// clients may split them into crumbs), so the same cookies over another
// transport hash the same.
func credentialHash(h http.Header) [32]byte {
	d := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		d.Write(n[:])
		d.Write([]byte(s))
	}
	for _, name := range []string{"Origin", "Cookie", "Authorization"} {
		vals := h.Values(name)
		if name == "Cookie" && len(vals) > 0 {
			var crumbs []string
			for _, v := range vals {
				for _, c := range strings.Split(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						crumbs = append(crumbs, c)
					}
				}
			}
			vals = []string{strings.Join(crumbs, "; ")}
		}
		put(name)
		binary.BigEndian.PutUint64(n[:], uint64(len(vals)))
		d.Write(n[:])
		for _, v := range vals {
			put(v)
		}
	}
	var out [32]byte
	d.Sum(out[:0])
	return out
}

// answer builds the first message of a resumable stream.
type answer struct {
	status string // new, resumed, refused
	have   uint64
	replay uint64
	window int64 // seconds, for new
	reason string
	closed uint16 // ended: the code the session ended with
	detail string
}

func (a answer) json() []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"zd-resume":`...)
	b = strconv.AppendQuote(b, a.status)
	if a.status == "refused" {
		b = append(b, `,"reason":`...)
		b = strconv.AppendQuote(b, a.reason)
		b = append(b, `,"code":`...)
		b = strconv.AppendUint(b, uint64(ResumeCode(a.reason)), 10)
		if a.closed != 0 {
			b = append(b, `,"closed":`...)
			b = strconv.AppendUint(b, uint64(a.closed), 10)
		}
		b = append(b, `,"detail":`...)
		b = appendJSONString(b, a.detail)
		return append(b, '}')
	}
	b = append(b, `,"have":`...)
	b = strconv.AppendUint(b, a.have, 10)
	if a.status == "new" {
		b = append(b, `,"window":`...)
		b = strconv.AppendInt(b, a.window, 10)
	} else {
		b = append(b, `,"replay":`...)
		b = strconv.AppendUint(b, a.replay, 10)
	}
	return append(b, '}')
}

// appendJSONString quotes s for JSON (strconv's Go quoting differs for
// some escapes, so only plain printable ASCII is kept as it is).
func appendJSONString(b []byte, s string) []byte {
	const hexd = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
