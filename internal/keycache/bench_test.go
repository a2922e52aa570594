package keycache

import (
	"strconv"
	"testing"
)

func BenchmarkGet(b *testing.B) {
	c := New(Config[string, int]{Max: 1024})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "/pkg.Service/Method" + strconv.Itoa(i)
		c.GetOrCreate(keys[i], func() int { return i })
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Get(keys[i&1023])
			i++
		}
	})
}

// BenchmarkGetHot looks up one key from every goroutine: its entry stays
// marked, so lookups only read.
func BenchmarkGetHot(b *testing.B) {
	c := New(Config[string, int]{Max: 1024})
	c.GetOrCreate("hot", func() int { return 1 })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Get("hot")
		}
	})
}

// BenchmarkInsert inserts new keys into a cache that already holds n keys
// and has room for them: the cost of an insert must not grow with n.
func BenchmarkInsert(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			keys := make([]string, n+b.N)
			for i := range keys {
				keys[i] = "key-" + strconv.Itoa(i)
			}
			c := New(Config[string, int]{Max: n + b.N})
			for _, k := range keys[:n] {
				c.GetOrCreate(k, func() int { return 0 })
			}
			b.ReportAllocs()
			b.ResetTimer()
			for _, k := range keys[n:] {
				c.GetOrCreate(k, func() int { return 0 })
			}
		})
	}
}

// BenchmarkInsertEvicting inserts new keys into a full cache of n idle
// keys: every insert evicts one. The cost must not grow with n.
func BenchmarkInsertEvicting(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			c := New(Config[string, int]{Max: n})
			for i := range n {
				c.GetOrCreate("key-"+strconv.Itoa(i), func() int { return 0 })
			}
			keys := make([]string, b.N)
			for i := range keys {
				keys[i] = "new-" + strconv.Itoa(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for _, k := range keys {
				c.GetOrCreate(k, func() int { return 0 })
			}
		})
	}
}
