// Package keyhash turns caller keys (API keys, tenant ids, peer
// addresses) into short keyed hashes, so that they can be shown in events,
// logs, spans, metrics and consoles without revealing them.
//
// A key is shown as "k:" followed by the first 12 hexadecimal digits (48
// bits) of its HMAC-SHA256 under a secret hash key. Without the hash key
// the display form reveals nothing usable of the caller's key, even one
// easy to guess; with it, the same caller key always has the same display
// form, so that a dashboard can follow one caller. The hash key is random
// per process unless configured: processes of a fleet that should agree
// on display forms share one.
package keyhash

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// Prefix starts every display form of a hashed key.
const Prefix = "k:"

// hexDigits is the number of hexadecimal digits of the HMAC shown.
const hexDigits = 12

// maxKept bounds the key buffer a pooled state keeps.
const maxKept = 1 << 10

// Len is the length of a display form: len(Prefix) + 12.
const Len = len(Prefix) + hexDigits

// Hasher hashes keys for display under one hash key. It is safe for
// concurrent use. Create it with [New]; the zero Hasher is not usable.
type Hasher struct {
	pool sync.Pool // of *state
}

// state is one HMAC under the hash key with the buffers a Hash needs, so
// that hashing allocates only its result.
type state struct {
	mac hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// New returns a Hasher whose hash key is key; an empty key means the
// process's own random key, the same for every Hasher of the process. It
// copies key.
func New(key []byte) *Hasher {
	if len(key) == 0 {
		return processHasher()
	}
	return newHasher(key)
}

func newHasher(key []byte) *Hasher {
	k := append([]byte(nil), key...)
	h := &Hasher{}
	h.pool.New = func() any { return &state{mac: hmac.New(sha256.New, k)} }
	return h
}

// processHasher returns the Hasher of the process's random key, made on
// first use.
var processHasher = sync.OnceValue(func() *Hasher {
	var key [32]byte
	rand.Read(key[:]) // never fails (crypto/rand)
	return newHasher(key[:])
})

// Default returns the Hasher of the process's random hash key: New(nil).
func Default() *Hasher { return processHasher() }

// Hash returns the display form of key: Prefix and 12 hexadecimal digits.
// The empty key stays empty: it is not a caller's key but the absence of
// one. It costs one HMAC-SHA256 and one allocation, for the result.
func (h *Hasher) Hash(key string) string {
	if key == "" {
		return ""
	}
	s := h.pool.Get().(*state)
	s.mac.Reset()
	s.in = append(s.in[:0], key...)
	s.mac.Write(s.in)
	s.mac.Sum(s.sum[:0])
	var out [Len]byte
	copy(out[:], Prefix)
	hex.Encode(out[len(Prefix):], s.sum[:hexDigits/2])
	if cap(s.in) <= maxKept {
		h.pool.Put(s)
	}
	return string(out[:])
}
