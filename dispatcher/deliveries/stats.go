package deliveries

import (
	"net/http"
	"time"

	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/store"
)

// MaxStatsHours is the longest window GET …/deliveries/stats sums up.
const MaxStatsHours = int(store.MaxStatsWindow / time.Hour)

// latencyJSON sums up a latency histogram: how many, and the estimated
// median and 90th percentile and the greatest, in milliseconds (0 when
// count is 0).
type latencyJSON struct {
	Count int64   `json:"count"`
	P50MS float64 `json:"p50Ms"`
	P90MS float64 `json:"p90Ms"`
	MaxMS float64 `json:"maxMs"`
}

func latencyOut(h store.LatencyHistogram) latencyJSON {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return latencyJSON{Count: h.Count(), P50MS: ms(h.Quantile(0.5)), P90MS: ms(h.Quantile(0.9)), MaxMS: ms(h.Max())}
}

type webhookStatsJSON struct {
	Delivered int64       `json:"delivered"`
	Failed    int64       `json:"failed"` // failed, dead or expired
	Pending   int64       `json:"pending"`
	Latency   latencyJSON `json:"latency"`
}

type handsetStatsJSON struct {
	Records   int64       `json:"records"`
	Delivered int64       `json:"delivered"`
	Failed    int64       `json:"failed"`
	Awaiting  int64       `json:"awaiting"`
	Latency   latencyJSON `json:"latency"`
}

type smsStatsJSON struct {
	Delivered int64            `json:"delivered"`
	Failed    int64            `json:"failed"`
	Pending   int64            `json:"pending"`
	Handset   handsetStatsJSON `json:"handset"`
}

// deliveryCountsJSON is one hour's, or the window's, deliveries.
type deliveryCountsJSON struct {
	Webhooks webhookStatsJSON `json:"webhooks"`
	SMS      smsStatsJSON     `json:"sms"`
}

func countsOut(web, sms store.DeliveryOutcomes, webLat store.LatencyHistogram, hs store.HandsetCounts, hsLat store.LatencyHistogram) deliveryCountsJSON {
	return deliveryCountsJSON{
		Webhooks: webhookStatsJSON{Delivered: web.Delivered, Failed: web.Failed, Pending: web.Pending, Latency: latencyOut(webLat)},
		SMS: smsStatsJSON{Delivered: sms.Delivered, Failed: sms.Failed, Pending: sms.Pending,
			Handset: handsetStatsJSON{Records: hs.Records, Delivered: hs.Delivered, Failed: hs.Failed, Awaiting: hs.Awaiting, Latency: latencyOut(hsLat)}},
	}
}

type statsHourJSON struct {
	Start time.Time `json:"start"`
	deliveryCountsJSON
}

type statsJSON struct {
	From   time.Time          `json:"from"`
	Until  time.Time          `json:"until"`
	Hours  []statsHourJSON    `json:"hours"`
	Totals deliveryCountsJSON `json:"totals"`
}

// getStats answers the org's deliveries per hour of creation over the
// last ?hours=N whole hours (the current one included, so until is the
// next full hour), and their totals: outcomes of webhook and SMS
// deliveries, handset receipts, and latencies estimated from the store's
// histograms (the window's from the hours' merged, not averaged).
func (a *API) getStats(w http.ResponseWriter, r *http.Request) {
	since, until, ok := httpx.HoursWindow(w, r, a.cfg.Now(), MaxStatsHours)
	if !ok {
		return
	}
	org, _ := orgs.From(r.Context())
	st, err := a.st.OrgDeliveryStats(r.Context(), org.ID, since, until)
	if err != nil {
		a.internal(w, "delivery stats", err)
		return
	}
	out := statsJSON{From: since, Until: until, Hours: make([]statsHourJSON, 0, len(st.Hours))}
	var web, sms store.DeliveryOutcomes
	var hs store.HandsetCounts
	var webLat, hsLat store.LatencyHistogram
	for _, h := range st.Hours {
		out.Hours = append(out.Hours, statsHourJSON{Start: h.Start, deliveryCountsJSON: countsOut(h.Webhook, h.SMS, h.WebhookLatency, h.Handset, h.HandsetLatency)})
		web.Add(h.Webhook)
		sms.Add(h.SMS)
		hs.Add(h.Handset)
		webLat.Add(h.WebhookLatency)
		hsLat.Add(h.HandsetLatency)
	}
	out.Totals = countsOut(web, sms, webLat, hs, hsLat)
	httpx.JSON(w, http.StatusOK, out)
}
