// Package ids makes the IDs otphub gives the rows it inserts at a high
// rate (challenges, their events, delivery tasks).
package ids

import "github.com/google/uuid"

// Ordered returns a time-ordered UUID (version 7: a millisecond timestamp,
// then 74 random bits). Rows keyed by such IDs are inserted in key order,
// so a B-tree index on the key grows at its right edge instead of
// dirtying pages all over it on every insert (a version 4 UUID lands on a
// random leaf); the IDs stay unguessable.
func Ordered() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
