package keyhash

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHashIsTheTruncatedHMAC(t *testing.T) {
	key := []byte("fleet-wide hash key")
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("secret-api-key"))
	want := "k:" + hex.EncodeToString(mac.Sum(nil))[:12]
	if got := New(key).Hash("secret-api-key"); got != want {
		t.Fatalf("Hash = %q, want %q", got, want)
	}
	if len(want) != Len || !strings.HasPrefix(want, Prefix) {
		t.Fatalf("display form %q: want Prefix and Len %d", want, Len)
	}
}

func TestHashKeys(t *testing.T) {
	a, b := New([]byte("one")), New([]byte("two"))
	if a.Hash("x") == b.Hash("x") {
		t.Error("two hash keys gave the same display form")
	}
	if a.Hash("x") != New([]byte("one")).Hash("x") {
		t.Error("one hash key gave two display forms")
	}
	if a.Hash("x") == a.Hash("y") {
		t.Error("two caller keys gave the same display form")
	}
	if New(nil) != Default() || New([]byte{}) != Default() {
		t.Error("an empty hash key is not the process's key")
	}
	if Default().Hash("x") == a.Hash("x") {
		t.Error("the process's random key gave the display form of a chosen key")
	}
	if a.Hash("") != "" {
		t.Error("the empty key was hashed")
	}
	key := []byte("mutable")
	h := New(key)
	before := h.Hash("x")
	key[0] = 'M'
	if h.Hash("x") != before {
		t.Error("New did not copy its key")
	}
}

func TestHashConcurrent(t *testing.T) {
	h := New([]byte("k"))
	want := h.Hash("caller")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if got := h.Hash("caller"); got != want {
					t.Errorf("Hash = %q, want %q", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestHashAllocatesOnlyTheResult(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	h := New([]byte("k"))
	h.Hash("warm")
	if n := testing.AllocsPerRun(1000, func() { h.Hash("caller-key") }); n > 1 {
		t.Fatalf("Hash: %v allocs, want at most 1", n)
	}
}

func FuzzHash(f *testing.F) {
	f.Add([]byte("k"), "caller")
	f.Add([]byte(nil), "")
	f.Add([]byte{0, 1, 2}, "\x00\xff<script>")
	f.Fuzz(func(t *testing.T, hashKey []byte, key string) {
		got := New(hashKey).Hash(key)
		if key == "" {
			if got != "" {
				t.Fatalf("Hash(\"\") = %q", got)
			}
			return
		}
		if len(got) != Len || !strings.HasPrefix(got, Prefix) || strings.Contains(got, key) && len(key) > 2 {
			t.Fatalf("Hash(%q) = %q", key, got)
		}
		if _, err := hex.DecodeString(got[len(Prefix):]); err != nil {
			t.Fatalf("Hash(%q) = %q: not hexadecimal", key, got)
		}
	})
}
