package embedded

import (
	"slices"
	"testing"
)

func TestAssignStickyIsBalancedAndMovesLittle(t *testing.T) {
	mk := func(parts ...int) *consumer {
		c := &consumer{parts: map[int]*assignment{}}
		for _, p := range parts {
			c.parts[p] = nil
		}
		return c
	}
	check := func(n int, want map[*consumer][]int, members []*consumer) {
		t.Helper()
		seen := make([]bool, n)
		for _, c := range members {
			if l := len(want[c]); l < n/len(members) || l > n/len(members)+1 {
				t.Fatalf("unbalanced: member has %d of %d partitions over %d members", l, n, len(members))
			}
			for _, p := range want[c] {
				if seen[p] {
					t.Fatalf("partition %d assigned twice", p)
				}
				seen[p] = true
			}
		}
		if slices.Contains(seen, false) {
			t.Fatalf("not every partition assigned: %v", seen)
		}
	}
	// A joins alone, then B joins: A keeps two of its four.
	a := mk(0, 1, 2, 3)
	b := mk()
	want := assignSticky(4, []*consumer{a, b})
	check(4, want, []*consumer{a, b})
	if !slices.Equal(want[a], []int{0, 1}) || !slices.Equal(want[b], []int{2, 3}) {
		t.Fatalf("join: %v %v", want[a], want[b])
	}
	// Of A{0,3} B{1} C{2}, B leaves: A and C keep theirs, 1 goes to C.
	a, c := mk(0, 3), mk(2)
	want = assignSticky(4, []*consumer{a, c})
	check(4, want, []*consumer{a, c})
	if !slices.Equal(want[a], []int{0, 3}) || !slices.Equal(want[c], []int{2, 1}) {
		t.Fatalf("leave: %v %v", want[a], want[c])
	}
	// More members than partitions: some get none.
	ms := []*consumer{mk(), mk(), mk(), mk(), mk(), mk()}
	want = assignSticky(4, ms)
	check(4, want, ms)
}
