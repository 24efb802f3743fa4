package orgs

import (
	"testing"
	"time"
)

// TestMinuteCap: max actions per org in a minute, each org its own
// count, Retry-After to the window's end, a new window after it.
func TestMinuteCap(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewMinuteCap(2, func() time.Time { return now })
	for i := range 2 {
		if ok, _ := c.Allow(1); !ok {
			t.Fatalf("action %d refused", i+1)
		}
	}
	now = now.Add(20 * time.Second)
	if ok, wait := c.Allow(1); ok || wait != 40*time.Second {
		t.Errorf("third action: allowed %v, wait %s (want refused, 40s)", ok, wait)
	}
	if ok, _ := c.Allow(2); !ok {
		t.Error("another org's first action refused")
	}
	now = now.Add(40 * time.Second)
	if ok, _ := c.Allow(1); !ok {
		t.Error("refused in a new minute")
	}
}
