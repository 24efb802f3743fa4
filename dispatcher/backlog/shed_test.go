package backlog

import (
	"testing"
	"time"
)

// TestShedShare: nothing is shed while records wait up to half the bound,
// then a share rising in proportion to all of them at the bound and past;
// a queue's load sheds alike against a bound of 1 (a full queue).
func TestShedShare(t *testing.T) {
	const bound = 500 * time.Millisecond
	for _, c := range []struct {
		wait time.Duration
		want float64
	}{{0, 0}, {bound / 2, 0}, {375 * time.Millisecond, 0.5}, {bound, 1}, {time.Minute, 1}} {
		if got := shedShare(c.wait.Seconds(), bound.Seconds()); got != c.want {
			t.Errorf("shedShare(%v, %v) = %v, want %v", c.wait, bound, got, c.want)
		}
	}
	for _, c := range []struct{ load, want float64 }{{0, 0}, {0.5, 0}, {0.75, 0.5}, {1, 1}, {3, 1}} {
		if got := shedShare(c.load, 1); got != c.want {
			t.Errorf("shedShare(%v, 1) = %v, want %v", c.load, got, c.want)
		}
	}
}
