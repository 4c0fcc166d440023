package snapshot

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// KeySize is the size of a snapshot key: AES-256.
const KeySize = 32

// GenerateKey returns a new random key.
func GenerateKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k) // never fails (crypto/rand documents it)
	return k
}

// FormatKey is key as zd-snapshot keygen writes it: 64 hex digits.
func FormatKey(key []byte) string { return hex.EncodeToString(key) }

// ParseKey reads a key as 64 hex digits or as base64 (standard or URL
// alphabet, padded or not) of 32 bytes; surrounding space is ignored. Any
// other text is an error wrapping ErrBadKey: a passphrase is refused rather
// than stretched into a weak key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadKey)
	}
	return nil, fmt.Errorf("%w: want %d bytes as %d hex digits or base64 (%d characters given)", ErrBadKey, KeySize, 2*KeySize, len(s))
}

// KeyID names a key without revealing it: the first 8 bytes of
// HMAC-SHA256(key, "zd-snapshot key id"), in hex. A file's header carries
// the id of its key, so a reader given another key says so at once.
func KeyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("zd-snapshot key id"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}
