package ids

import (
	"testing"

	"github.com/google/uuid"
)

func TestOrdered(t *testing.T) {
	t.Parallel()
	prev := ""
	seen := map[string]bool{}
	for range 10000 {
		id := Ordered()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || len(id) != 36 {
			t.Fatalf("Ordered() = %q (%v), want a version 7 UUID", id, err)
		}
		if id <= prev || seen[id] {
			t.Fatalf("Ordered() = %q after %q: not increasing", id, prev)
		}
		seen[id], prev = true, id
	}
}
