package store_test

import (
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

// TestLatencyHistogramQuantile: the rank floor(q·n) of the merged
// histogram, placed linearly between its bucket's least and greatest
// latency; nothing counted is 0.
func TestLatencyHistogramQuantile(t *testing.T) {
	var h store.LatencyHistogram
	if h.Count() != 0 || h.Quantile(0.5) != 0 || h.Max() != 0 {
		t.Fatal("an empty histogram is not all zero")
	}
	one := func(i int, b store.LatencyBucket) store.LatencyHistogram {
		o := make(store.LatencyHistogram, len(store.LatencyBounds)+1)
		o[i] = b
		return o
	}
	// 100–200 ms: five latencies from 110 to 190 ms; over 1 h: one of 2 h.
	h.Add(one(7, store.LatencyBucket{Count: 5, Min: 110 * time.Millisecond, Max: 190 * time.Millisecond}))
	h.Add(one(len(store.LatencyBounds), store.LatencyBucket{Count: 1, Min: 2 * time.Hour, Max: 2 * time.Hour}))
	h.Add(nil)
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 110 * time.Millisecond}, {0.5, 170 * time.Millisecond}, {0.8, 190 * time.Millisecond}, {0.9, 2 * time.Hour}, {1, 2 * time.Hour}} {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	// Merging a bucket widens its range and adds its count.
	h.Add(one(7, store.LatencyBucket{Count: 1, Min: 101 * time.Millisecond, Max: 101 * time.Millisecond}))
	if h[7] != (store.LatencyBucket{Count: 6, Min: 101 * time.Millisecond, Max: 190 * time.Millisecond}) || h.Count() != 7 || h.Max() != 2*time.Hour {
		t.Errorf("after a merge: %+v, count %d, max %v", h[7], h.Count(), h.Max())
	}
}
