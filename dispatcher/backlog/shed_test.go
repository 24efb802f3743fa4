package backlog

import (
	"testing"
	"time"
)

// TestShedShare: nothing is shed while records wait up to half the bound,
// then a share rising in proportion to all of them at the bound and past.
func TestShedShare(t *testing.T) {
	const bound = 500 * time.Millisecond
	for _, c := range []struct {
		wait time.Duration
		want float64
	}{{0, 0}, {bound / 2, 0}, {375 * time.Millisecond, 0.5}, {bound, 1}, {time.Minute, 1}} {
		if got := shedShare(c.wait, bound); got != c.want {
			t.Errorf("shedShare(%v, %v) = %v, want %v", c.wait, bound, got, c.want)
		}
	}
}
