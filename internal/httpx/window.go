package httpx

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// DefaultWindowHours is the window of a statistics endpoint without ?hours.
const DefaultWindowHours = 24

// HoursWindow reads a statistics endpoint's ?hours=N (1 to maxHours,
// default DefaultWindowHours) and returns the window of the last N whole
// hours, UTC, the current one included: until is the next full hour after
// now. Anything else (not an integer, out of range, repeated) writes 400
// invalid_hours and returns ok false.
func HoursWindow(w http.ResponseWriter, r *http.Request, now time.Time, maxHours int) (since, until time.Time, ok bool) {
	hours := DefaultWindowHours
	if v, given := r.URL.Query()["hours"]; given {
		n, err := strconv.Atoi(v[0])
		if err != nil || len(v) > 1 || n < 1 || n > maxHours {
			Error(w, http.StatusBadRequest, "invalid_hours", fmt.Sprintf("hours must be an integer from 1 to %d", maxHours))
			return time.Time{}, time.Time{}, false
		}
		hours = n
	}
	until = now.UTC().Truncate(time.Hour).Add(time.Hour)
	return until.Add(-time.Duration(hours) * time.Hour), until, true
}
