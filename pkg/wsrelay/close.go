package wsrelay

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// Close codes (RFC 6455 section 7.4.1 and the IANA registry) the relay
// sends or looks at.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupported     = 1003
	CloseNoStatus        = 1005 // never on the wire: the Close had no payload
	CloseAbnormal        = 1006 // never on the wire: the connection dropped
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseTooBig          = 1009
	CloseMandatoryExt    = 1010
	CloseInternalError   = 1011
	CloseServiceRestart  = 1012
	CloseTryAgainLater   = 1013
	CloseBadGateway      = 1014
)

// CloseError is a failure of the peer to follow RFC 6455: Code is the close
// code the relay sends it, Reason says why (and goes in the Close frame).
type CloseError struct {
	Code   uint16
	Reason string
}

func (e *CloseError) Error() string {
	return "websocket: " + e.Reason + " (close " + strconv.Itoa(int(e.Code)) + ")"
}

func protocolError(reason string) error { return &CloseError{CloseProtocolError, reason} }

// validCloseCode reports whether code may appear in a Close frame: the
// registered codes that are meant for the wire, and 3000-4999.
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// parseClose checks a Close frame's payload (section 5.5.1) and returns its
// code (CloseNoStatus when empty) and reason.
func parseClose(p []byte) (uint16, string, error) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, "", nil
	case len(p) == 1:
		return 0, "", protocolError("close frame payload of 1 byte")
	}
	code := binary.BigEndian.Uint16(p)
	if !validCloseCode(code) {
		return 0, "", protocolError("invalid close code " + strconv.Itoa(int(code)))
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", &CloseError{CloseInvalidPayload, "close reason is not valid UTF-8"}
	}
	return code, string(p[2:]), nil
}

// closePayload builds a Close payload; codes that must not be sent
// (1005, 1006, 1015, invalid ones) give an empty payload. The reason is cut
// to fit a control frame, at a rune boundary.
func closePayload(code uint16, reason string) []byte {
	return appendClosePayload(nil, code, reason)
}

// appendClosePayload appends closePayload(code, reason) to dst (a buffer
// on the caller's stack, for the Close every move sends).
func appendClosePayload(dst []byte, code uint16, reason string) []byte {
	if !validCloseCode(code) {
		return dst
	}
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}
