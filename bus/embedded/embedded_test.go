package embedded_test

import (
	"testing"

	"github.com/otphub/otphub/bus/bustest"
	"github.com/otphub/otphub/bus/embedded"
)

func openT(t *testing.T, dir string, cfg embedded.Config) *embedded.Log {
	t.Helper()
	l, err := embedded.Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestConformance(t *testing.T) {
	bustest.Run(t, bustest.Features{}, func(t *testing.T, o bustest.Options) (bustest.Bus, func() bustest.Bus) {
		dir := t.TempDir()
		cfg := embedded.Config{MaxInFlight: o.MaxInFlight}
		return openT(t, dir, cfg), func() bustest.Bus { return openT(t, dir, cfg) }
	})
}
