package authcore

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
)

// MaxStatsHours is the longest window GET …/sms-otp/stats sums up.
const MaxStatsHours = int(store.MaxStatsWindow / time.Hour)

type statsHour struct {
	Start    time.Time `json:"start"`
	Sent     int64     `json:"sent"`
	Verified int64     `json:"verified"`
}

type statsCountry struct {
	Country     string  `json:"country"`     // "+94"; "unknown"
	CallingCode int     `json:"callingCode"` // 0 when unknown
	Sent        int64   `json:"sent"`
	Delivered   int64   `json:"delivered"`
	Receipts    int64   `json:"receipts"`
	Verified    int64   `json:"verified"`
	Conversion  float64 `json:"conversion"` // verified ÷ sent
}

type statsJSON struct {
	From      time.Time      `json:"from"`
	Until     time.Time      `json:"until"`
	Hours     []statsHour    `json:"hours"`
	Countries []statsCountry `json:"countries"`
}

// getStats answers the org's OTPs sent and verified per hour, and per
// country with what delivery receipts said, over the last ?hours=N whole
// hours (the current one included, so until is the next full hour).
func (s *Service) getStats(w http.ResponseWriter, r *http.Request) {
	since, until, ok := httpx.HoursWindow(w, r, s.cfg.Now(), MaxStatsHours)
	if !ok {
		return
	}
	st, err := s.st.OTPStats(r.Context(), orgOf(r).ID, since, until)
	if err != nil {
		s.internal(w, "otp stats", err)
		return
	}
	out := statsJSON{From: since, Until: until, Hours: make([]statsHour, 0, len(st.Hours)), Countries: make([]statsCountry, 0, len(st.Countries))}
	for _, h := range st.Hours {
		out.Hours = append(out.Hours, statsHour{Start: h.Start, Sent: h.Sent, Verified: h.Verified})
	}
	for _, c := range st.Countries {
		name := "unknown"
		if c.CountryCode > 0 {
			name = "+" + strconv.Itoa(c.CountryCode)
		}
		conv := 0.0
		if c.Sent > 0 {
			conv = math.Round(float64(c.Verified)/float64(c.Sent)*10000) / 10000
		}
		out.Countries = append(out.Countries, statsCountry{Country: name, CallingCode: c.CountryCode, Sent: c.Sent,
			Delivered: c.Delivered, Receipts: c.Receipts, Verified: c.Verified, Conversion: conv})
	}
	httpx.JSON(w, http.StatusOK, out)
}
