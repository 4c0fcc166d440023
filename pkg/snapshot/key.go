package snapshot

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
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

// ReadKeyFile reads a key file as zd-snapshot keygen writes it. A file that
// group or others may read is refused (wrapping ErrBadKey), as ssh refuses
// such a private key.
func ReadKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: key file %s has mode %04o: others may read it", ErrBadKey, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// KeyFromEnv returns the key in $ZD_SNAPSHOT_KEY, else the origin's
// $CONNECTION_STATE_KEY, else nil; name is the variable it came from.
func KeyFromEnv(getenv func(string) string) (key []byte, name string, err error) {
	for _, env := range []string{"ZD_SNAPSHOT_KEY", "CONNECTION_STATE_KEY"} {
		if v := getenv(env); strings.TrimSpace(v) != "" {
			k, err := ParseKey(v)
			if err != nil {
				return nil, env, fmt.Errorf("$%s: %w", env, err)
			}
			return k, env, nil
		}
	}
	return nil, "", nil
}
