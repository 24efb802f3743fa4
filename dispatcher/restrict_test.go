package dispatcher

import (
	"testing"

	"github.com/otphub/otphub/delivery"
)

// TestRestrict: an event restricted to one destination keeps only that
// target, without its fallback; an unrestricted one keeps them all; an
// unknown destination gets none.
func TestRestrict(t *testing.T) {
	fb := &delivery.Target{Type: "vonage", ID: "fallback"}
	all := []delivery.Target{{Type: "webhook", ID: "a"}, {Type: "webhook", ID: "b"}, {Type: "twilio", ID: "primary", Fallback: fb}}
	if got := restrict(all, ""); len(got) != 3 {
		t.Errorf("unrestricted: %d targets", len(got))
	}
	if got := restrict(all, "webhook:b"); len(got) != 1 || got[0].ID != "b" {
		t.Errorf("webhook:b: %+v", got)
	}
	if got := restrict(all, "twilio:primary"); len(got) != 1 || got[0].Fallback != nil {
		t.Errorf("twilio:primary: %+v (want no fallback)", got)
	}
	if all[2].Fallback != fb {
		t.Error("restrict changed the resolver's target")
	}
	if got := restrict(all, "webhook:gone"); len(got) != 0 {
		t.Errorf("unknown destination: %+v", got)
	}
}
