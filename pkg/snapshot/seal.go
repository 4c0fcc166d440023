package snapshot

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// sealer closes and opens chunk payloads. An encrypted file seals with
// AES-256-GCM under a per-file key, HKDF-SHA256(key, salt = the header's file
// id), with a random 12-byte nonce per chunk; a plain file appends the first
// 16 bytes of SHA-256(associated data || payload), which catches damage,
// truncation and reordering but is no defence against a forger.
//
// The associated data of chunk i is SHA-256(prefix || header) || type || i:
// a chunk opens only in its own file, at its own place, as its own type.
type sealer struct {
	aead   cipher.AEAD // nil: plain
	digest [sha256.Size]byte
	aad    [sha256.Size + 5]byte
}

const (
	nonceSize = 12
	tagSize   = 16
)

func newSealer(key, fileID []byte, digest [sha256.Size]byte) (*sealer, error) {
	s := &sealer{digest: digest}
	copy(s.aad[:], digest[:])
	if key == nil {
		return s, nil
	}
	fk, err := hkdf.Key(sha256.New, key, fileID, "zd-snapshot v1 aes-256-gcm", KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive the file key: %w", err)
	}
	block, err := aes.NewCipher(fk)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	if s.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	return s, nil
}

// overhead is what sealing adds to a payload.
func (s *sealer) overhead() int {
	if s.aead != nil {
		return nonceSize + tagSize
	}
	return tagSize
}

func (s *sealer) ad(typ byte, index uint32) []byte {
	s.aad[sha256.Size] = typ
	binary.BigEndian.PutUint32(s.aad[sha256.Size+1:], index)
	return s.aad[:]
}

// seal appends the sealed payload (nonce, ciphertext and tag; or payload and
// checksum) to dst.
func (s *sealer) seal(dst []byte, typ byte, index uint32, payload []byte) []byte {
	ad := s.ad(typ, index)
	if s.aead == nil {
		dst = append(dst, payload...)
		return append(dst, plainTag(ad, payload)...)
	}
	var nonce [nonceSize]byte
	rand.Read(nonce[:])
	dst = append(dst, nonce[:]...)
	return s.aead.Seal(dst, nonce[:], payload, ad)
}

// open checks and opens a sealed payload, appending the payload to dst. It
// reports false when the payload does not authenticate for (typ, index).
func (s *sealer) open(dst []byte, typ byte, index uint32, sealed []byte) ([]byte, bool) {
	ad := s.ad(typ, index)
	if s.aead == nil {
		if len(sealed) < tagSize {
			return nil, false
		}
		body := sealed[:len(sealed)-tagSize]
		if subtle.ConstantTimeCompare(plainTag(ad, body), sealed[len(body):]) != 1 {
			return nil, false
		}
		return append(dst, body...), true
	}
	if len(sealed) < nonceSize+tagSize {
		return nil, false
	}
	out, err := s.aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], ad)
	return out, err == nil
}

func plainTag(ad, payload []byte) []byte {
	h := sha256.New()
	h.Write(ad)
	h.Write(payload)
	return h.Sum(nil)[:tagSize]
}
