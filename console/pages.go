package console

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/audit"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/templates"
)

// orgHandler is a handler of a signed-in request on an org's page.
type orgHandler func(w http.ResponseWriter, r *http.Request, s *session, p *page)

func (c *Console) registerPages(mux httpx.Mux) {
	org := func(pattern, section string, h orgHandler) {
		mux.HandleFunc(pattern, c.authed(c.orgPage(section, h)))
	}
	const base = "/console/orgs/{org}"
	// The org picker without script: GET /console/orgs/?org=name.
	mux.HandleFunc("GET /console/orgs/{$}", c.authed(func(w http.ResponseWriter, r *http.Request, s *session) {
		org := r.URL.Query().Get("org")
		if org == "" {
			http.Redirect(w, r, "/console/", http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, pagePath(org, "/"), http.StatusSeeOther)
	}))
	org("GET "+base+"/{$}", "overview", c.overview)
	org("GET "+base+"/sms-otp", "sms-otp", c.smsOTPPage)
	org("POST "+base+"/sms-otp", "sms-otp", c.smsOTPSave)
	org("GET "+base+"/sms-provider", "sms-provider", c.providerPage)
	org("POST "+base+"/sms-provider", "sms-provider", c.providerSave)
	org("POST "+base+"/sms-provider/delete", "sms-provider", c.providerDelete)
	org("POST "+base+"/sms-provider/test", "sms-provider", c.providerTest)
	org("GET "+base+"/templates", "templates", c.templatesPage)
	org("POST "+base+"/templates", "templates", c.templateSave)
	org("POST "+base+"/templates/delete", "templates", c.templateDelete)
	org("POST "+base+"/templates/preview", "templates", c.templatePreview)
	org("GET "+base+"/webhooks", "webhooks", c.webhooksPage)
	org("POST "+base+"/webhooks", "webhooks", c.webhookAdd)
	org("POST "+base+"/webhooks/{id}/delete", "webhooks", c.webhookDelete)
	org("POST "+base+"/webhooks/{id}/test", "webhooks", c.webhookTest)
	org("POST "+base+"/webhooks/{id}/rotate", "webhooks", c.webhookRotate)
	org("GET "+base+"/deliveries", "deliveries", c.deliveriesPage)
	org("GET "+base+"/deliveries/{id}", "deliveries", c.deliveryPage)
	org("POST "+base+"/deliveries/{id}/retry", "deliveries", c.deliveryRetry)
	org("POST "+base+"/deliveries/replay", "deliveries", c.deliveriesReplay)
	org("GET "+base+"/clients", "clients", c.clientsPage)
	org("POST "+base+"/clients", "clients", c.clientCreate)
	org("POST "+base+"/clients/{id}/delete", "clients", c.clientDelete)
	org("GET "+base+"/applications", "applications", c.applicationsPage)
	org("POST "+base+"/applications", "applications", c.applicationCreate)
	org("GET "+base+"/applications/{id}", "applications", c.applicationPage)
	org("POST "+base+"/applications/{id}", "applications", c.applicationSave)
	org("POST "+base+"/applications/{id}/secret", "applications", c.applicationSecret)
	org("POST "+base+"/applications/{id}/delete", "applications", c.applicationDelete)
	org("GET "+base+"/audit", "audit", c.auditPage)
	org("GET "+base+"/team", "team", c.usersPage)
	org("POST "+base+"/team", "team", c.userInvite)
	org("POST "+base+"/team/{id}/delete", "team", c.userDelete)

	plat := func(pattern, section string, h orgHandler) {
		mux.HandleFunc(pattern, c.authed(c.platformPage(section, h)))
	}
	plat("GET /console/platform/orgs", "orgs", c.orgsPage)
	plat("POST /console/platform/orgs", "orgs", c.orgCreate)
	plat("GET /console/platform/users", "users", c.usersPage)
	plat("POST /console/platform/users", "users", c.userInvite)
	plat("POST /console/platform/users/{id}/delete", "users", c.userDelete)
	plat("GET /console/platform/audit", "audit", c.auditPage)
}

// orgPage checks the user may administer {org} (through the API, which
// answers 403 or 404 otherwise) and fills the page's common parts.
func (c *Console) orgPage(section string, h orgHandler) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		org := r.PathValue("org")
		status, body := c.call(r, s, "GET", "/api/v1/orgs/"+url.PathEscape(org), nil)
		if status != http.StatusOK {
			e, _ := fieldErrors(body)
			c.render(w, status, "error", page{Title: "Not available", User: &s.user, CSRF: s.csrf, Error: e.Message})
			return
		}
		var o struct{ ID int64 }
		_ = json.Unmarshal(body, &o)
		p := &page{Section: section, User: &s.user, Org: org, orgID: o.ID, Base: pagePath(org, ""), CSRF: s.csrf, Notice: s.notice, Flash: c.flash(r)}
		if s.principal.PlatformAdmin {
			p.Orgs = c.orgNames(r, s)
		}
		h(w, r, s, p)
	}
}

func (c *Console) platformPage(section string, h orgHandler) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		if !s.principal.PlatformAdmin {
			c.render(w, http.StatusForbidden, "error", page{Title: "Not available", User: &s.user, CSRF: s.csrf, Error: "Only a platform admin may open this page."})
			return
		}
		p := &page{Section: "platform-" + section, User: &s.user, CSRF: s.csrf, Notice: s.notice, Flash: c.flash(r), Orgs: c.orgNames(r, s)}
		h(w, r, s, p)
	}
}

func (c *Console) orgNames(r *http.Request, s *session) []string {
	var out struct {
		Orgs []struct{ Name string } `json:"orgs"`
	}
	if status, body := c.call(r, s, "GET", "/api/v1/orgs", nil); status == http.StatusOK {
		_ = json.Unmarshal(body, &out)
	}
	names := make([]string, 0, len(out.Orgs))
	for _, o := range out.Orgs {
		names = append(names, o.Name)
	}
	return names
}

// getJSON calls a GET API and decodes its answer into v; false (with the
// API's message in p.Error) when it failed.
func (c *Console) getJSON(r *http.Request, s *session, p *page, path string, v any) bool {
	status, body := c.call(r, s, "GET", path, nil)
	if status != http.StatusOK {
		e, _ := fieldErrors(body)
		p.Error = e.Message
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		p.Error = "unexpected answer from the API"
		return false
	}
	return true
}

// done redirects to path after a change, with a message (Post/Redirect/Get).
// The message is MAC'd, so that a crafted link cannot put words in the
// console's mouth.
func (c *Console) done(w http.ResponseWriter, r *http.Request, path, msg string) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	http.Redirect(w, r, path+sep+"done="+url.QueryEscape(msg)+"&ds="+c.mac("flash", msg), http.StatusSeeOther)
}

// flash is the message done passed, if its MAC is right.
func (c *Console) flash(r *http.Request) string {
	q := r.URL.Query()
	msg := q.Get("done")
	if msg == "" || subtle.ConstantTimeCompare([]byte(q.Get("ds")), []byte(c.mac("flash", msg))) != 1 {
		return ""
	}
	return msg
}

func apiPath(org, rest string) string { return "/api/v1/orgs/" + url.PathEscape(org) + rest }
func pagePath(org, rest string) string {
	return "/console/orgs/" + url.PathEscape(org) + rest
}

// ---- Overview ----

type overviewData struct {
	Provider string
	Fallback string
	Webhooks int
	Active   int
	// Deliveries sums up the last 24 hours' deliveries (GET
	// …/deliveries/stats); nil when there were none.
	Deliveries *deliveryOverview
	Handset    *handsetSummary
	// Latency is the SMS latency to the handset per hour (receipts).
	Latency *hourChart
	// OTPs sent and verified per hour, and per country, of the last 24
	// hours (GET …/sms-otp/stats).
	OTPChart             *hourChart
	Countries            []countryRow
	OTPSent, OTPVerified int
}

// deliveryOverview is the overview's deliveries section: the window's
// totals per kind, the webhook and SMS deliveries per hour, and the
// webhook delivery latency per hour with the window's percentiles.
type deliveryOverview struct {
	Rows                      []deliveryRow
	Webhooks, SMS             *hourChart
	WebhookLatency            *hourChart
	WebhookMedian, WebhookP90 string
}

// deliveryRow is one kind of delivery (webhooks, SMS) of the window.
type deliveryRow struct {
	Kind                       string
	Delivered, Failed, Pending int
	Finished                   bool // any delivered or failed (a success rate)
	Rate                       int  // delivered, percent of the finished
}

// deliveryStats is GET …/deliveries/stats's answer.
type deliveryStats struct {
	Hours []struct {
		Start time.Time
		deliveryCounts
	}
	Totals deliveryCounts
}

type deliveryCounts struct {
	Webhooks struct {
		outcomeCounts
		Latency latencyStats
	}
	SMS struct {
		outcomeCounts
		Handset struct {
			Records, Delivered, Failed, Awaiting int
			Latency                              latencyStats
		}
	}
}

type outcomeCounts struct{ Delivered, Failed, Pending int }

// latencyStats are a latency histogram's count and estimated
// percentiles, in milliseconds.
type latencyStats struct {
	Count               int
	P50Ms, P90Ms, MaxMs float64
}

func deliveryRowOf(kind string, o outcomeCounts) deliveryRow {
	r := deliveryRow{Kind: kind, Delivered: o.Delivered, Failed: o.Failed, Pending: o.Pending}
	if final := o.Delivered + o.Failed; final > 0 {
		r.Finished, r.Rate = true, o.Delivered*100/final
	}
	return r
}

// summarizeDeliveries lays out the deliveries section; nil when the
// window has none.
func summarizeDeliveries(st deliveryStats) *deliveryOverview {
	w, s := st.Totals.Webhooks, st.Totals.SMS
	if w.Delivered+w.Failed+w.Pending+s.Delivered+s.Failed+s.Pending == 0 || len(st.Hours) == 0 {
		return nil
	}
	d := &deliveryOverview{Rows: []deliveryRow{deliveryRowOf("Webhooks", w.outcomeCounts), deliveryRowOf("SMS", s.outcomeCounts)}}
	web := make([][]int, len(st.Hours))
	sms := make([][]int, len(st.Hours))
	lat := make([]latencyStats, len(st.Hours))
	for i, h := range st.Hours {
		o := h.Webhooks.outcomeCounts
		web[i] = []int{o.Delivered, o.Failed, o.Pending}
		o = h.SMS.outcomeCounts
		sms[i] = []int{o.Delivered, o.Failed, o.Pending}
		lat[i] = h.Webhooks.Latency
	}
	start := st.Hours[0].Start
	d.Webhooks = newHourChart(start, deliverySeries, web, true)
	d.SMS = newHourChart(start, smsSeries, sms, true)
	d.WebhookLatency = latencyChart(start, lat)
	if w.Latency.Count > 0 {
		d.WebhookMedian, d.WebhookP90 = formatMs(w.Latency.P50Ms), formatMs(w.Latency.P90Ms)
	}
	return d
}

// formatMs writes a latency in milliseconds as a duration, to the
// millisecond from 10 ms up and to 10 µs below.
func formatMs(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	if d >= 10*time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Microsecond).String()
}

// handsetSummary is what delivery receipts said of the SMS deliveries of
// the window (GET …/deliveries/stats).
type handsetSummary struct {
	Total, Delivered, Failed, Awaiting int
	Rate                               int    // delivered, percent of those with a final receipt
	Median, P90                        string // acceptance to delivery
}

// summarizeHandsets sums up the window's handset receipts; nil without
// any receipt record.
func summarizeHandsets(st deliveryStats) *handsetSummary {
	hs := st.Totals.SMS.Handset
	if hs.Records == 0 {
		return nil
	}
	h := &handsetSummary{Total: hs.Records, Delivered: hs.Delivered, Failed: hs.Failed, Awaiting: hs.Awaiting}
	if final := h.Delivered + h.Failed; final > 0 {
		h.Rate = h.Delivered * 100 / final
	}
	if hs.Latency.Count > 0 {
		h.Median, h.P90 = formatMs(hs.Latency.P50Ms), formatMs(hs.Latency.P90Ms)
	}
	return h
}

// handsetLatencyChart draws the SMS latency to the handset per hour.
func handsetLatencyChart(st deliveryStats) *hourChart {
	if len(st.Hours) == 0 {
		return nil
	}
	lat := make([]latencyStats, len(st.Hours))
	for i, h := range st.Hours {
		lat[i] = h.SMS.Handset.Latency
	}
	return latencyChart(st.Hours[0].Start, lat)
}

// hourChart is counts per hour of a few series, drawn as SVG bars by the
// overview's "hourchart" template (no script): each hour's series either
// stacked in one bar (parts of a whole: deliveries by outcome) or side by
// side (counts to compare: OTPs sent and verified).
type hourChart struct {
	Series        []chartSeries
	Hours         []hourBar
	Max           int // the tallest bar's count
	Width, Height int
}

// chartSeries is one series: its name (legend, tooltip, table column),
// its SVG fill (a presentation attribute: the CSP allows no inline style)
// and its legend class, of the same colour in console.css.
type chartSeries struct {
	Name, Column, Fill, Key string
}

type hourBar struct {
	Label  string // "15:00"
	X      int
	Tick   bool  // label this hour on the axis
	Counts []int // per series
	Rects  []chartRect
	Any    bool // a count is not zero (a row of the table)
}

type chartRect struct{ X, Y, W, H int }

const chartHeight, chartBar = 160, 22

// newHourChart lays out counts[hour][series] for the hours from start; nil
// when every count is zero.
func newHourChart(start time.Time, series []chartSeries, counts [][]int, stacked bool) *hourChart {
	ch := &hourChart{Series: series, Width: len(counts) * (chartBar + 4), Height: chartHeight + 18}
	ch.Hours = make([]hourBar, len(counts))
	for i, cs := range counts {
		b := &ch.Hours[i]
		b.Label = start.Add(time.Duration(i) * time.Hour).UTC().Format("15:00")
		b.X, b.Tick, b.Counts = i*(chartBar+4), i%6 == 0, cs
		sum := 0
		for _, n := range cs {
			sum += n
			b.Any = b.Any || n != 0
			if !stacked {
				ch.Max = max(ch.Max, n)
			}
		}
		if stacked {
			ch.Max = max(ch.Max, sum)
		}
	}
	if ch.Max == 0 {
		return nil
	}
	scale := func(n int) int { return n * (chartHeight - 20) / ch.Max }
	w := (chartBar - (len(series) - 1)) / len(series) // side by side, 1 apart
	for i := range ch.Hours {
		b := &ch.Hours[i]
		y := chartHeight
		for k, n := range b.Counts {
			h := scale(n)
			if stacked {
				y -= h
				b.Rects = append(b.Rects, chartRect{X: b.X, Y: y, W: chartBar, H: h})
			} else {
				b.Rects = append(b.Rects, chartRect{X: b.X + k*(w+1), Y: chartHeight - h, W: w, H: h})
			}
		}
	}
	return ch
}

var latencySeries = []chartSeries{
	{Name: "ms median", Column: "Median (ms)", Fill: "#0b5cad", Key: "key-sent"},
	{Name: "ms 90th percentile", Column: "90th percentile (ms)", Fill: "#9a6700", Key: "key-open"},
}

// latencyChart draws the median and 90th percentile of each hour's
// latencies from start side by side, in whole milliseconds rounded up (so
// a sub-millisecond webhook answer still shows as a bar); nil when no
// hour has any.
func latencyChart(start time.Time, lat []latencyStats) *hourChart {
	counts := make([][]int, len(lat))
	for i, l := range lat {
		counts[i] = []int{0, 0}
		if l.Count > 0 {
			counts[i] = []int{int(math.Ceil(l.P50Ms)), int(math.Ceil(l.P90Ms))}
		}
	}
	return newHourChart(start, latencySeries, counts, false)
}

var deliverySeries = []chartSeries{
	{Name: "delivered", Column: "Delivered", Fill: "#1a7f37", Key: "key-ok"},
	{Name: "failed, dead or expired", Column: "Failed", Fill: "#b42318", Key: "key-bad"},
	{Name: "pending", Column: "Pending", Fill: "#9a6700", Key: "key-open"},
}

// smsSeries are deliverySeries for SMS, whose delivery is the provider's
// acceptance (the handset's is the receipts' business).
var smsSeries = []chartSeries{
	{Name: "accepted by the provider", Column: "Accepted", Fill: "#1a7f37", Key: "key-ok"},
	deliverySeries[1], deliverySeries[2],
}

// otpStats is GET …/sms-otp/stats's answer.
type otpStats struct {
	Hours []struct {
		Start          time.Time
		Sent, Verified int
	}
	Countries []struct {
		Country                             string
		Sent, Delivered, Receipts, Verified int
		Conversion                          float64
	}
}

var otpSeries = []chartSeries{
	{Name: "sent", Column: "Sent", Fill: "#0b5cad", Key: "key-sent"},
	{Name: "verified", Column: "Verified", Fill: "#1a7f37", Key: "key-ok"},
}

// otpChart draws the OTPs sent and verified per hour, side by side.
func otpChart(st otpStats) *hourChart {
	if len(st.Hours) == 0 {
		return nil
	}
	counts := make([][]int, len(st.Hours))
	for i, h := range st.Hours {
		counts[i] = []int{h.Sent, h.Verified}
	}
	return newHourChart(st.Hours[0].Start, otpSeries, counts, false)
}

// countryRow is one country of the conversion table.
type countryRow struct {
	Country                   string
	Sent, Delivered, Verified int
	Receipts                  bool // a delivery receipt was recorded for its SMS
	Pct                       int  // conversion, percent (the meter)
	Conversion                string
}

func countryRows(st otpStats) []countryRow {
	var out []countryRow
	for _, c := range st.Countries {
		out = append(out, countryRow{Country: c.Country, Sent: c.Sent, Delivered: c.Delivered, Verified: c.Verified,
			Receipts: c.Receipts > 0, Pct: int(c.Conversion*100 + 0.5), Conversion: strconv.FormatFloat(c.Conversion*100, 'f', 1, 64) + "%"})
	}
	return out
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Overview"
	d := overviewData{Provider: "not configured", Fallback: "not configured"}
	var prov struct{ Type string }
	if c.getJSON(r, s, &page{}, apiPath(p.Org, "/sms-provider"), &prov) {
		d.Provider = prov.Type
	}
	if c.getJSON(r, s, &page{}, apiPath(p.Org, "/sms-provider/fallback"), &prov) {
		d.Fallback = prov.Type
	}
	var st otpStats
	if c.getJSON(r, s, &page{}, apiPath(p.Org, "/sms-otp/stats?hours=24"), &st) {
		d.OTPChart, d.Countries = otpChart(st), countryRows(st)
		for _, h := range st.Hours {
			d.OTPSent, d.OTPVerified = d.OTPSent+h.Sent, d.OTPVerified+h.Verified
		}
	}
	var subs subscriptionList
	if c.getJSON(r, s, p, apiPath(p.Org, "/subscriptions"), &subs) {
		d.Webhooks = len(subs.Subscriptions)
		for _, sub := range subs.Subscriptions {
			if sub.State == "active" {
				d.Active++
			}
		}
	}
	var ds deliveryStats
	if c.getJSON(r, s, p, apiPath(p.Org, "/deliveries/stats?hours=24"), &ds) {
		d.Deliveries = summarizeDeliveries(ds)
		d.Handset = summarizeHandsets(ds)
		d.Latency = handsetLatencyChart(ds)
	}
	p.Data = d
	c.render(w, http.StatusOK, "overview", *p)
}

// ---- Connections › SMS OTP ----

type otpSettings struct {
	ExpirySeconds         int   `json:"expirySeconds"`
	NumericOnly           bool  `json:"numericOnly"`
	Length                int   `json:"length"`
	MaxResends            int   `json:"maxResends"`
	ResendIntervalSeconds int   `json:"resendIntervalSeconds"`
	MaxFailedAttempts     int   `json:"maxFailedAttempts"`
	BackupCodesEnabled    bool  `json:"backupCodesEnabled"`
	AllowedCountryCodes   []int `json:"allowedCountryCodes"`
}

// formSettings is the SMS OTP form: the fields as typed.
type formSettings struct {
	Expiry, Length, MaxResends, ResendInterval, MaxFailed, Countries string
	NumericOnly, BackupCodes                                         bool
	Field                                                            map[string]string
}

func (c *Console) smsOTPPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "SMS OTP"
	var st otpSettings
	f := formSettings{}
	if c.getJSON(r, s, p, apiPath(p.Org, "/sms-otp/settings"), &st) {
		cc := make([]string, 0, len(st.AllowedCountryCodes))
		for _, n := range st.AllowedCountryCodes {
			cc = append(cc, strconv.Itoa(n))
		}
		f = formSettings{Expiry: strconv.Itoa(st.ExpirySeconds), Length: strconv.Itoa(st.Length), MaxResends: strconv.Itoa(st.MaxResends),
			ResendInterval: strconv.Itoa(st.ResendIntervalSeconds), MaxFailed: strconv.Itoa(st.MaxFailedAttempts),
			Countries: strings.Join(cc, ", "), NumericOnly: st.NumericOnly, BackupCodes: st.BackupCodesEnabled}
	}
	p.Data = f
	c.render(w, http.StatusOK, "sms-otp", *p)
}

// settingsFields maps the API's field names onto the form's.
var settingsFields = map[string]string{
	"expirySeconds": "expiry", "length": "length", "maxResends": "maxResends", "resendIntervalSeconds": "resendInterval",
	"maxFailedAttempts": "maxFailed", "allowedCountryCodes": "countries", "numericOnly": "numericOnly",
}

func (c *Console) smsOTPSave(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "SMS OTP"
	f := formSettings{Expiry: r.PostFormValue("expiry"), Length: r.PostFormValue("length"), MaxResends: r.PostFormValue("maxResends"),
		ResendInterval: r.PostFormValue("resendInterval"), MaxFailed: r.PostFormValue("maxFailed"), Countries: r.PostFormValue("countries"),
		NumericOnly: r.PostFormValue("numericOnly") == "on", BackupCodes: r.PostFormValue("backupCodes") == "on", Field: map[string]string{}}
	body := map[string]any{"numericOnly": f.NumericOnly, "backupCodesEnabled": f.BackupCodes}
	for _, in := range []struct{ form, api, label, value string }{
		{"expiry", "expirySeconds", "SMS OTP expiry time", f.Expiry}, {"length", "length", "SMS OTP length", f.Length},
		{"maxResends", "maxResends", "Resends allowed", f.MaxResends}, {"resendInterval", "resendIntervalSeconds", "Resend interval", f.ResendInterval},
		{"maxFailed", "maxFailedAttempts", "Failed attempts allowed", f.MaxFailed},
	} {
		n, err := strconv.Atoi(strings.TrimSpace(in.value))
		if err != nil {
			f.Field[in.form] = "Enter a whole number."
			continue
		}
		body[in.api] = n
	}
	cc := []int{}
	for _, part := range strings.FieldsFunc(f.Countries, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(strings.TrimPrefix(part, "+"))
		if err != nil {
			f.Field["countries"] = fmt.Sprintf("%q is not a country calling code; list codes such as 94, 1.", part)
			break
		}
		cc = append(cc, n)
	}
	body["allowedCountryCodes"] = cc
	if len(f.Field) == 0 {
		status, resp := c.call(r, s, "PUT", apiPath(p.Org, "/sms-otp/settings"), body)
		if status == http.StatusOK {
			c.done(w, r, p.path("/sms-otp"), "SMS OTP settings updated.")
			return
		}
		e, fields := fieldErrors(resp)
		for k, v := range fields {
			if form, ok := settingsFields[k]; ok {
				f.Field[form] = v
			}
		}
		if len(f.Field) == 0 {
			p.Error = e.Message
		}
	}
	if p.Error == "" {
		p.Error = "Correct the fields marked below."
	}
	p.Data = f
	c.render(w, http.StatusBadRequest, "sms-otp", *p)
}

// ---- Email & SMS › SMS Provider ----

type providerConfig struct {
	Type                string     `json:"type"`
	AccountSID          string     `json:"accountSid,omitempty"`
	AuthToken           string     `json:"authToken,omitempty"`
	MessagingServiceSID string     `json:"messagingServiceSid,omitempty"`
	APIKey              string     `json:"apiKey,omitempty"`
	APISecret           string     `json:"apiSecret,omitempty"`
	Sender              string     `json:"sender,omitempty"`
	BaseURL             string     `json:"baseUrl,omitempty"`
	URL                 string     `json:"url,omitempty"`
	ContentType         string     `json:"contentType,omitempty"`
	Method              string     `json:"method,omitempty"`
	PayloadTemplate     string     `json:"payloadTemplate,omitempty"`
	Headers             string     `json:"headers,omitempty"`
	UpdatedAt           *time.Time `json:"updatedAt,omitempty"`
}

type providerData struct {
	Slot     string // primary | fallback
	Tab      string // twilio | vonage | custom
	Saved    *providerConfig
	Form     providerConfig // what the form shows: the saved values of this tab, or what was typed
	HasSaved bool
	Field    map[string]string
	Test     *testResult
	TestTo   string
}

type testResult struct {
	OK                bool   `json:"ok"`
	StatusCode        int    `json:"statusCode"`
	Reason            string `json:"reason"`
	ProviderMessageID string `json:"providerMessageId"`
	Error             string `json:"error"`
}

var providerTabs = []string{"twilio", "vonage", "custom"}

func slotPath(slot string) string {
	if slot == "fallback" {
		return "/sms-provider/fallback"
	}
	return "/sms-provider"
}

func (c *Console) loadProvider(r *http.Request, s *session, p *page, slot, tab string) providerData {
	if slot != "fallback" {
		slot = "primary"
	}
	d := providerData{Slot: slot, Field: map[string]string{}}
	var saved providerConfig
	status, body := c.call(r, s, "GET", apiPath(p.Org, slotPath(slot)), nil)
	if status == http.StatusOK && json.Unmarshal(body, &saved) == nil {
		d.Saved, d.HasSaved = &saved, true
	}
	switch {
	case slices.Contains(providerTabs, tab):
		d.Tab = tab
	case d.HasSaved && slices.Contains(providerTabs, saved.Type):
		d.Tab = saved.Type
	default:
		d.Tab = "twilio"
	}
	if d.HasSaved && saved.Type == d.Tab {
		d.Form = saved
		// Secrets are never shown again: the API masks them (****last4),
		// the form leaves token fields empty, and an empty one is sent
		// back masked, which the API takes as "keep the saved secret".
		// Header values stay masked in the headers text the same way.
		d.Form.AuthToken, d.Form.APISecret = "", ""
	}
	return d
}

func (c *Console) providerPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "SMS Provider"
	q := r.URL.Query()
	p.Data = c.loadProvider(r, s, p, q.Get("slot"), q.Get("tab"))
	c.render(w, http.StatusOK, "sms-provider", *p)
}

func (c *Console) providerSave(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "SMS Provider"
	d := c.loadProvider(r, s, p, r.PostFormValue("slot"), r.PostFormValue("type"))
	f := r.PostFormValue
	cfg := providerConfig{Type: d.Tab}
	switch d.Tab {
	case "twilio":
		cfg.AccountSID, cfg.AuthToken, cfg.Sender = strings.TrimSpace(f("accountSid")), f("authToken"), strings.TrimSpace(f("sender"))
	case "vonage":
		cfg.APIKey, cfg.APISecret, cfg.Sender = strings.TrimSpace(f("apiKey")), f("apiSecret"), strings.TrimSpace(f("sender"))
	case "custom":
		cfg.URL, cfg.ContentType, cfg.Method = strings.TrimSpace(f("url")), f("contentType"), f("method")
		cfg.PayloadTemplate, cfg.Headers = f("payloadTemplate"), f("headers")
	}
	if d.Tab != "custom" {
		cfg.BaseURL = strings.TrimSpace(f("baseUrl"))
	}
	if d.Tab == "twilio" {
		cfg.MessagingServiceSID = strings.TrimSpace(f("messagingServiceSid"))
	}
	if d.HasSaved && d.Saved.Type == d.Tab {
		if cfg.AuthToken == "" {
			cfg.AuthToken = d.Saved.AuthToken
		}
		if cfg.APISecret == "" {
			cfg.APISecret = d.Saved.APISecret
		}
	}
	status, body := c.call(r, s, "PUT", apiPath(p.Org, slotPath(d.Slot)), cfg)
	if status == http.StatusOK {
		c.done(w, r, p.path("/sms-provider?slot="+d.Slot), fmt.Sprintf("%s saved as the %s SMS provider.", tabName(d.Tab), d.Slot))
		return
	}
	e, fields := fieldErrors(body)
	d.Field = fields
	if d.Field == nil {
		d.Field = map[string]string{}
	}
	// Show what was typed, secrets excepted.
	d.Form = cfg
	d.Form.AuthToken, d.Form.APISecret = "", ""
	p.Error = e.Message
	p.Data = d
	c.render(w, http.StatusBadRequest, "sms-provider", *p)
}

func tabName(tab string) string {
	switch tab {
	case "twilio":
		return "Twilio"
	case "vonage":
		return "Vonage"
	}
	return "Custom provider"
}

func (c *Console) providerDelete(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	slot := r.PostFormValue("slot")
	if slot != "fallback" {
		slot = "primary"
	}
	status, body := c.call(r, s, "DELETE", apiPath(p.Org, slotPath(slot)), nil)
	if status != http.StatusNoContent {
		e, _ := fieldErrors(body)
		p.Error = e.Message
		p.Title = "SMS Provider"
		p.Data = c.loadProvider(r, s, p, slot, "")
		c.render(w, status, "sms-provider", *p)
		return
	}
	c.done(w, r, p.path("/sms-provider?slot="+slot), "The "+slot+" SMS provider was removed.")
}

func (c *Console) providerTest(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "SMS Provider"
	d := c.loadProvider(r, s, p, r.PostFormValue("slot"), r.PostFormValue("tab"))
	d.TestTo = strings.TrimSpace(r.PostFormValue("mobile"))
	status, body := c.call(r, s, "POST", apiPath(p.Org, "/sms-provider/test"), map[string]string{"mobile": d.TestTo, "slot": d.Slot})
	if status == http.StatusOK {
		var res testResult
		_ = json.Unmarshal(body, &res)
		d.Test = &res
		p.Data = d
		c.render(w, http.StatusOK, "sms-provider", *p)
		return
	}
	e, fields := fieldErrors(body)
	if fields["mobile"] != "" {
		d.Field["testMobile"] = fields["mobile"]
	} else {
		p.Error = e.Message
	}
	p.Data = d
	c.render(w, http.StatusBadRequest, "sms-provider", *p)
}

// ---- Email & SMS › SMS Templates ----

type templatesData struct {
	Locales   []localeRow
	Locale    string // "default" or a BCP 47 tag
	Body      string
	Override  bool // the org has its own template for Locale
	Preview   string
	PreviewOK bool
	Field     map[string]string
}

type localeRow struct {
	Locale   string
	Override bool
}

type templateJSON struct {
	Locale string `json:"locale"`
	Body   string `json:"body"`
}

// templatesData lists the built-in locales and the org's overrides, and
// loads locale's template: the org's, or the built-in default.
func (c *Console) templatesData(r *http.Request, s *session, p *page, locale string) templatesData {
	d := templatesData{Locale: locale, Field: map[string]string{}}
	var list struct {
		Templates []templateJSON `json:"templates"`
	}
	c.getJSON(r, s, p, apiPath(p.Org, "/sms-otp/templates"), &list)
	rows := map[string]*localeRow{"default": {Locale: "default"}}
	for _, l := range templates.Locales() {
		rows[l] = &localeRow{Locale: l}
	}
	for _, t := range list.Templates {
		rows[t.Locale] = &localeRow{Locale: t.Locale, Override: true}
		if t.Locale == locale {
			d.Body, d.Override = t.Body, true
		}
	}
	if _, ok := rows[locale]; !ok {
		rows[locale] = &localeRow{Locale: locale}
	}
	for _, row := range rows {
		d.Locales = append(d.Locales, *row)
	}
	sort.Slice(d.Locales, func(i, j int) bool {
		if (d.Locales[i].Locale == "default") != (d.Locales[j].Locale == "default") {
			return d.Locales[i].Locale == "default"
		}
		return d.Locales[i].Locale < d.Locales[j].Locale
	})
	if !d.Override {
		if locale == "default" {
			d.Body = templates.Default(templates.DefaultLocale)
		} else {
			d.Body = templates.Default(locale)
		}
	}
	return d
}

// preview renders body as an SMS of this org would read, with a sample
// OTP shaped by the org's settings.
func (c *Console) preview(r *http.Request, s *session, org, body string) (string, bool) {
	var st otpSettings
	if status, b := c.call(r, s, "GET", apiPath(org, "/sms-otp/settings"), nil); status == http.StatusOK {
		_ = json.Unmarshal(b, &st)
	}
	otp := sampleOTP(st.Length, st.NumericOnly)
	out, err := templates.Render(body, templates.Vars{Application: "Shop", OTP: otp, Org: org,
		ExpiryMinutes: templates.Minutes(time.Duration(st.ExpirySeconds) * time.Second)})
	if err != nil {
		return strings.TrimPrefix(err.Error(), "template: "), false
	}
	return out, true
}

func sampleOTP(n int, numeric bool) string {
	const digits, alnum = "4829157360", "K7Q2M9XA4T8R"
	if n <= 0 {
		n = 6
	}
	src := alnum
	if numeric {
		src = digits
	}
	var b strings.Builder
	for i := range min(n, 32) {
		b.WriteByte(src[i%len(src)])
	}
	return b.String()
}

func validLocale(l string) bool {
	if l == "default" {
		return true
	}
	return regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}$`).MatchString(l)
}

func (c *Console) templatesPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "SMS Templates"
	locale := r.URL.Query().Get("locale")
	if locale == "" {
		locale = "default"
	}
	if !validLocale(locale) {
		p.Error = "Not a language tag (such as en, fr-CA)."
		locale = "default"
	}
	d := c.templatesData(r, s, p, locale)
	d.Preview, d.PreviewOK = c.preview(r, s, p.Org, d.Body)
	p.Data = d
	c.render(w, http.StatusOK, "templates", *p)
}

func (c *Console) templateSave(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "SMS Templates"
	locale, body := strings.TrimSpace(r.PostFormValue("locale")), r.PostFormValue("body")
	if !validLocale(locale) {
		d := c.templatesData(r, s, p, "default")
		d.Field["locale"] = "Enter a language tag such as en, fr-CA, or default."
		d.Body = body
		p.Data = d
		c.render(w, http.StatusBadRequest, "templates", *p)
		return
	}
	d := c.templatesData(r, s, p, locale)
	d.Body = body
	d.Preview, d.PreviewOK = c.preview(r, s, p.Org, body)
	if r.PostFormValue("action") == "preview" {
		p.Data = d
		c.render(w, http.StatusOK, "templates", *p)
		return
	}
	status, resp := c.call(r, s, "PUT", apiPath(p.Org, "/sms-otp/templates/"+url.PathEscape(locale)), map[string]string{"body": body})
	if status == http.StatusOK {
		c.done(w, r, p.path("/templates?locale="+url.QueryEscape(locale)), "Template for "+locale+" saved.")
		return
	}
	e, fields := fieldErrors(resp)
	if msg := fields["body"]; msg != "" {
		d.Field["body"] = strings.TrimPrefix(msg, "template: ")
	} else if msg := fields["locale"]; msg != "" {
		d.Field["locale"] = msg
	} else {
		p.Error = e.Message
	}
	p.Data = d
	c.render(w, http.StatusBadRequest, "templates", *p)
}

func (c *Console) templateDelete(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	locale := r.PostFormValue("locale")
	status, body := c.call(r, s, "DELETE", apiPath(p.Org, "/sms-otp/templates/"+url.PathEscape(locale)), nil)
	if status != http.StatusNoContent {
		e, _ := fieldErrors(body)
		p.Title = "SMS Templates"
		p.Error = e.Message
		p.Data = c.templatesData(r, s, p, "default")
		c.render(w, status, "templates", *p)
		return
	}
	c.done(w, r, p.path("/templates?locale="+url.QueryEscape(locale)), "The "+locale+" override was removed: the built-in template applies.")
}

// templatePreview answers the page's script with the rendered preview
// (JSON), for the live preview while typing.
func (c *Console) templatePreview(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	text, ok := c.preview(r, s, p.Org, r.PostFormValue("body"))
	securityHeaders(w.Header())
	httpx.JSON(w, http.StatusOK, map[string]any{"ok": ok, "text": text})
}

// ---- Webhooks ----

type subscription struct {
	ID           string     `json:"id"`
	Topic        string     `json:"topic"`
	Callback     string     `json:"callback"`
	State        string     `json:"state"`
	LeaseSeconds int        `json:"leaseSeconds"`
	ExpiresAt    *time.Time `json:"expiresAt"`
	Format       string     `json:"format"`
	SignatureAlg string     `json:"signatureAlg"`
	HasSecret    bool       `json:"hasSecret"`
	AutoRenew    bool       `json:"autoRenew"`
	// PreviousSecretUntil: until then the secret a rotation replaced
	// still signs deliveries too.
	PreviousSecretUntil *time.Time `json:"previousSecretUntil"`
	CreatedAt           time.Time  `json:"createdAt"`
	UpdatedAt           time.Time  `json:"updatedAt"`
	LastDelivery        *delivery
}

type subscriptionList struct {
	Subscriptions []subscription `json:"subscriptions"`
}

type webhooksData struct {
	Subscriptions []subscription
	Callback      string
	Format        string
	Lease         string
	Formats       []string
	Field         map[string]string // by field name; a subscription's own fields as "<name>-<id>"
	Topic         string
	// TestDelivery is the delivery of the test event just sent, to link to.
	TestDelivery string
	// Rotated is the secret the hub generated for a rotation, shown on
	// that answer only.
	Rotated *rotatedSecret
}

type rotatedSecret struct {
	Callback, Secret string
}

var webhookFormats = []string{"asgardeo", "set", "set-jwt", "cloudevents"}

func (c *Console) webhooksData(r *http.Request, s *session, p *page) webhooksData {
	d := webhooksData{Formats: webhookFormats, Format: "asgardeo", Field: map[string]string{},
		Topic: event.TopicURL(c.publicBase(r), p.Org)}
	var subs subscriptionList
	if c.getJSON(r, s, p, apiPath(p.Org, "/subscriptions"), &subs) {
		d.Subscriptions = subs.Subscriptions
	}
	// The last delivery of each.
	for i := range d.Subscriptions {
		var dl deliveryList
		q := url.Values{"destinationType": {"webhook"}, "destinationId": {d.Subscriptions[i].ID}, "limit": {"1"}}
		if c.getJSON(r, s, &page{}, apiPath(p.Org, "/deliveries?"+q.Encode()), &dl) && len(dl.Deliveries) > 0 {
			d.Subscriptions[i].LastDelivery = &dl.Deliveries[0]
		}
	}
	return d
}

func (c *Console) publicBase(r *http.Request) string {
	if c.cfg.PublicURL != "" {
		return strings.TrimSuffix(c.cfg.PublicURL, "/")
	}
	return "http://" + r.Host
}

// deliveryIDPattern is the shape of a delivery ID (a UUID) a link may name.
var deliveryIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func (c *Console) webhooksPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Webhooks"
	d := c.webhooksData(r, s, p)
	if id := r.URL.Query().Get("delivery"); p.Flash != "" && deliveryIDPattern.MatchString(id) {
		d.TestDelivery = id
	}
	p.Data = d
	c.render(w, http.StatusOK, "webhooks", *p)
}

func (c *Console) webhookAdd(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Webhooks"
	d := c.webhooksData(r, s, p)
	d.Callback, d.Format, d.Lease = strings.TrimSpace(r.PostFormValue("callback")), r.PostFormValue("format"), strings.TrimSpace(r.PostFormValue("lease"))
	form := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {d.Topic}, "hub.callback": {d.Callback}, "otphub.format": {d.Format}}
	if secret := r.PostFormValue("secret"); secret != "" {
		form.Set("hub.secret", secret)
	}
	if d.Lease != "" {
		form.Set("hub.lease_seconds", d.Lease)
	}
	started := time.Now().Add(-time.Second)
	status, body := c.call(r, s, "POST", "/hub", form)
	if status == http.StatusAccepted {
		msg, _ := c.verificationResult(r, s, p.Org, d.Callback, started, "If it never does, no subscription is made.")
		c.done(w, r, p.path("/webhooks"), msg)
		return
	}
	e, _ := fieldErrors(body)
	switch e.Error {
	case "invalid_callback":
		d.Field["callback"] = e.Message
	case "invalid_format":
		d.Field["format"] = e.Message
	case "invalid_lease":
		d.Field["lease"] = e.Message
	case "invalid_secret":
		d.Field["secret"] = e.Message
	default:
		p.Error = e.Message
	}
	if p.Error == "" {
		p.Error = "Correct the fields marked below."
	}
	p.Data = d
	c.render(w, http.StatusBadRequest, "webhooks", *p)
}

// verificationWait is how long adding a webhook waits for the hub's
// intent verification (it runs in the background) to tell its result.
const verificationWait = 5 * time.Second

// verificationResult waits for the subscription of callback to turn
// active (verified after since) and says how the verification went,
// ending with unverified when it did not within verificationWait. The
// verified subscription is returned too (nil when not verified).
func (c *Console) verificationResult(r *http.Request, s *session, org, callback string, since time.Time, unverified string) (string, *subscription) {
	deadline := time.Now().Add(verificationWait)
	for {
		var subs subscriptionList
		if status, b := c.call(r, s, "GET", apiPath(org, "/subscriptions"), nil); status == http.StatusOK && json.Unmarshal(b, &subs) == nil {
			for _, sub := range subs.Subscriptions {
				if sub.Callback == callback && sub.State == "active" && sub.UpdatedAt.After(since) {
					return "Verified: " + callback + " answered the WebSub challenge; the subscription is active.", &sub
				}
			}
		}
		if time.Now().After(deadline) || r.Context().Err() != nil {
			return "Not verified yet: " + callback + " has not answered the WebSub challenge (a GET with hub.challenge, which it must echo) within " +
				verificationWait.String() + ". " + unverified, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// webhookSubscription loads subscription {id} of the page's org; on
// failure it has rendered the page with the API's message.
func (c *Console) webhookSubscription(w http.ResponseWriter, r *http.Request, s *session, p *page) (subscription, bool) {
	var sub subscription
	status, body := c.call(r, s, "GET", apiPath(p.Org, "/subscriptions/"+url.PathEscape(r.PathValue("id"))), nil)
	if status == http.StatusOK && json.Unmarshal(body, &sub) == nil {
		return sub, true
	}
	c.webhooksError(w, r, s, p, status, body)
	return sub, false
}

// webhooksError renders the webhooks page with an API error as the
// page-level message.
func (c *Console) webhooksError(w http.ResponseWriter, r *http.Request, s *session, p *page, status int, body []byte) {
	e, _ := fieldErrors(body)
	p.Title = "Webhooks"
	p.Error = e.Message
	p.Data = c.webhooksData(r, s, p)
	if status < 400 {
		status = http.StatusBadGateway
	}
	c.render(w, status, "webhooks", *p)
}

// webhookTest sends subscription {id} a test event (POST
// …/subscriptions/{id}/test) and tells how its first attempt went, with a
// link to the delivery.
func (c *Console) webhookTest(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	sub, ok := c.webhookSubscription(w, r, s, p)
	if !ok {
		return
	}
	status, body := c.call(r, s, "POST", apiPath(p.Org, "/subscriptions/"+url.PathEscape(sub.ID)+"/test"), nil)
	var out struct {
		EventID    string `json:"eventId"`
		DeliveryID string `json:"deliveryId"`
		Status     string `json:"status"`
	}
	if status != http.StatusAccepted || json.Unmarshal(body, &out) != nil {
		c.webhooksError(w, r, s, p, status, body)
		return
	}
	var msg string
	switch out.Status {
	case "delivered":
		msg = "Test event delivered to " + sub.Callback + "."
	case "pending":
		msg = "Test event sent to " + sub.Callback + ": the first attempt failed; it will be retried like any delivery."
	case "":
		msg = "Test event " + out.EventID + " sent to " + sub.Callback + "; its first attempt has not ended yet: find it under Deliveries."
	default:
		msg = "Test event to " + sub.Callback + ": " + out.Status + "."
	}
	path := p.path("/webhooks")
	if out.DeliveryID != "" {
		path += "?delivery=" + url.QueryEscape(out.DeliveryID)
	}
	c.done(w, r, path, msg)
}

// webhookRotate replaces subscription {id}'s secret: a re-subscription
// through the hub with the same topic, callback, format, signature
// algorithm and lease and the new hub.secret (or one the hub generates,
// shown on this answer only). The hub keeps the replaced secret signing
// for its overlap (docs/websub.md, "Secret rotation").
func (c *Console) webhookRotate(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	sub, ok := c.webhookSubscription(w, r, s, p)
	if !ok {
		return
	}
	p.Title = "Webhooks"
	form := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {sub.Topic}, "hub.callback": {sub.Callback},
		"otphub.format": {sub.Format}, "otphub.signature_alg": {sub.SignatureAlg}}
	if !sub.AutoRenew {
		form.Set("hub.lease_seconds", strconv.Itoa(sub.LeaseSeconds))
	}
	if secret := r.PostFormValue("secret"); secret != "" {
		form.Set("hub.secret", secret)
	} else {
		form.Set("otphub.generate_secret", "whsec")
	}
	status, body := c.call(r, s, "POST", "/hub", form)
	if status != http.StatusAccepted {
		e, _ := fieldErrors(body)
		d := c.webhooksData(r, s, p)
		if e.Error == "invalid_secret" {
			d.Field["secret-"+sub.ID] = e.Message
			p.Error = "Correct the fields marked below."
		} else {
			p.Error = e.Message
		}
		p.Data = d
		c.render(w, http.StatusBadRequest, "webhooks", *p)
		return
	}
	var accepted struct {
		Secret string `json:"secret"`
	}
	_ = json.Unmarshal(body, &accepted)
	// Verified: updated after the row as it was before the rotation.
	msg, verified := c.verificationResult(r, s, p.Org, sub.Callback, sub.UpdatedAt,
		"Until it does, deliveries stay signed with the current secret only.")
	switch {
	case verified == nil:
	case verified.PreviousSecretUntil != nil:
		msg += " The new secret signs every delivery; the previous one is still accepted until " + verified.PreviousSecretUntil.UTC().Format("2006-01-02 15:04:05 UTC") + "."
	case sub.HasSecret:
		msg += " The new secret signs every delivery; the previous one no longer does."
	default:
		msg += " Deliveries are signed with the new secret from now on."
	}
	d := c.webhooksData(r, s, p)
	if accepted.Secret != "" {
		// Shown on this answer only: the hub keeps it sealed, and
		// reloading the page does not show it again.
		d.Rotated = &rotatedSecret{Callback: sub.Callback, Secret: accepted.Secret}
		msg += " Copy the new secret now: it is not shown again."
	}
	p.Flash = msg
	p.Data = d
	c.render(w, http.StatusOK, "webhooks", *p)
}

func (c *Console) webhookDelete(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	status, body := c.call(r, s, "DELETE", apiPath(p.Org, "/subscriptions/"+url.PathEscape(r.PathValue("id"))), nil)
	if status != http.StatusNoContent {
		e, _ := fieldErrors(body)
		p.Title = "Webhooks"
		p.Error = e.Message
		p.Data = c.webhooksData(r, s, p)
		c.render(w, status, "webhooks", *p)
		return
	}
	c.done(w, r, p.path("/webhooks"), "Subscription deleted.")
}

// ---- Deliveries ----

type delivery struct {
	ID              string     `json:"id"`
	EventID         string     `json:"eventId"`
	DestinationType string     `json:"destinationType"`
	DestinationID   string     `json:"destinationId"`
	Status          string     `json:"status"`
	Attempts        int        `json:"attempts"`
	NextAttemptAt   *time.Time `json:"nextAttemptAt"`
	ExpiresAt       *time.Time `json:"expiresAt"`
	LastError       string     `json:"lastError"`
	LastStatusCode  int        `json:"lastStatusCode"`
	CreatedAt       time.Time  `json:"createdAt"`
	UpdatedAt       time.Time  `json:"updatedAt"`
	Handset         *handset   `json:"handset"`
	AttemptLog      []struct {
		Number     int       `json:"number"`
		StartedAt  time.Time `json:"startedAt"`
		DurationMS float64   `json:"durationMs"`
		StatusCode int       `json:"statusCode"`
		Outcome    string    `json:"outcome"`
		Error      string    `json:"error"`
	} `json:"attemptLog"`
}

// handset is what the provider's delivery receipts said of an SMS
// delivery (docs/providers.md, "Delivery receipts").
type handset struct {
	State             string     `json:"state"`
	ProviderMessageID string     `json:"providerMessageId"`
	ErrorCode         string     `json:"errorCode"`
	AcceptedAt        *time.Time `json:"acceptedAt"`
	QueuedAt          *time.Time `json:"queuedAt"`
	SentAt            *time.Time `json:"sentAt"`
	DeliveredAt       *time.Time `json:"deliveredAt"`
	FailedAt          *time.Time `json:"failedAt"`
	ReceiptDueAt      *time.Time `json:"receiptDueAt"`
	LastReceiptAt     *time.Time `json:"lastReceiptAt"`
	Receipts          int        `json:"receipts"`
	Failover          *struct {
		Status string    `json:"status"`
		Reason string    `json:"reason"`
		At     time.Time `json:"at"`
	} `json:"failover"`
}

type deliveryList struct {
	Deliveries []delivery `json:"deliveries"`
	NextCursor string     `json:"nextCursor"`
}

var deliveryStatuses = []string{"pending", "delivered", "failed", "expired", "dead"}

type deliveriesData struct {
	Deliveries   []delivery
	Statuses     []string
	Status       string
	Destination  string
	Destinations []string
	Since        string
	Next         string
	Replay       *replayPreview
	Field        map[string]string
}

type replayPreview struct {
	Status, Since string
	Count         int
	More          bool // at least Count
}

// maxReplayCount is how many deliveries a replay preview counts at most.
const maxReplayCount = 10000

// parseSince reads a since filter: an RFC 3339 time or a datetime-local value (UTC).
func parseSince(v string) (time.Time, bool) {
	if v == "" {
		return time.Time{}, true
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// listDeliveries returns up to limit of the newest deliveries matching
// status, destination ("type:id", or a type) and since, all filtered by the
// API, whether there are more, and the cursor of the next page.
func (c *Console) listDeliveries(r *http.Request, s *session, p *page, status, dest string, since time.Time, before string, limit int) ([]delivery, string, bool) {
	q := url.Values{"limit": {strconv.Itoa(min(limit, 1000))}}
	if status != "" {
		q.Set("status", status)
	}
	if dest != "" {
		typ, id, _ := strings.Cut(dest, ":")
		q.Set("destinationType", typ)
		if id != "" {
			q.Set("destinationId", id)
		}
	}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339))
	}
	if before != "" {
		q.Set("before", before)
	}
	var out []delivery
	for {
		var dl deliveryList
		if !c.getJSON(r, s, p, apiPath(p.Org, "/deliveries?"+q.Encode()), &dl) {
			return nil, "", false
		}
		out = append(out, dl.Deliveries...)
		if len(out) >= limit || dl.NextCursor == "" {
			return out, dl.NextCursor, dl.NextCursor != ""
		}
		q.Set("before", dl.NextCursor)
		q.Set("limit", strconv.Itoa(min(limit-len(out), 1000)))
	}
}

// destinations are the filter's choices: the org's webhook subscriptions,
// its SMS providers, those of the deliveries shown and the chosen one.
func (c *Console) destinations(r *http.Request, s *session, p *page, shown []delivery, chosen string) []string {
	set := map[string]bool{}
	var subs subscriptionList
	if c.getJSON(r, s, &page{}, apiPath(p.Org, "/subscriptions"), &subs) {
		for _, sub := range subs.Subscriptions {
			set["webhook:"+sub.ID] = true
		}
	}
	for _, role := range []string{"/sms-provider", "/sms-provider/fallback"} {
		var prov struct{ Type string }
		if c.getJSON(r, s, &page{}, apiPath(p.Org, role), &prov) && prov.Type != "" {
			set[prov.Type] = true
		}
	}
	for _, t := range shown {
		set[t.DestinationType+":"+t.DestinationID] = true
	}
	if chosen != "" {
		set[chosen] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *Console) deliveriesPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Deliveries"
	q := r.URL.Query()
	d := deliveriesData{Statuses: deliveryStatuses, Status: q.Get("status"), Destination: q.Get("destination"), Since: q.Get("since"), Field: map[string]string{}}
	if d.Status != "" && !slices.Contains(deliveryStatuses, d.Status) {
		d.Field["status"] = "Choose a status from the list."
		d.Status = ""
	}
	since, ok := parseSince(d.Since)
	if !ok {
		d.Field["since"] = "Enter a time such as 2026-01-02T15:04 (UTC)."
	}
	d.Deliveries, d.Next, _ = c.listDeliveries(r, s, p, d.Status, d.Destination, since, q.Get("before"), 100)
	d.Destinations = c.destinations(r, s, p, d.Deliveries, d.Destination)
	p.Data = d
	c.render(w, http.StatusOK, "deliveries", *p)
}

func (c *Console) deliveryPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Delivery"
	var t delivery
	if !c.getJSON(r, s, p, apiPath(p.Org, "/deliveries/"+url.PathEscape(r.PathValue("id"))), &t) {
		c.render(w, http.StatusNotFound, "error", *p)
		return
	}
	p.Data = t
	c.render(w, http.StatusOK, "delivery", *p)
}

func (c *Console) deliveryRetry(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	id := r.PathValue("id")
	status, body := c.call(r, s, "POST", apiPath(p.Org, "/deliveries/"+url.PathEscape(id)+"/retry"), nil)
	if status != http.StatusAccepted {
		e, _ := fieldErrors(body)
		p.Title = "Delivery"
		p.Error = e.Message
		var t delivery
		if c.getJSON(r, s, &page{}, apiPath(p.Org, "/deliveries/"+url.PathEscape(id)), &t) {
			p.Data = t
			c.render(w, status, "delivery", *p)
			return
		}
		c.render(w, status, "error", *p)
		return
	}
	c.done(w, r, p.path("/deliveries/"+url.PathEscape(id)), "Retry queued: the delivery is pending and is attempted again now.")
}

// deliveriesReplay first shows how many deliveries a replay would requeue
// (counted through the list API) and asks to confirm; the confirmed form
// calls the replay API.
func (c *Console) deliveriesReplay(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Deliveries"
	status, sinceText := r.PostFormValue("status"), r.PostFormValue("since")
	d := deliveriesData{Statuses: deliveryStatuses, Status: status, Since: sinceText, Field: map[string]string{}}
	since, ok := parseSince(sinceText)
	switch {
	case !ok:
		d.Field["replaySince"] = "Enter a time such as 2026-01-02T15:04 (UTC)."
	case status == "" && sinceText == "":
		d.Field["replayStatus"] = "Choose a status or a time to replay."
	case status == "pending":
		d.Field["replayStatus"] = "Pending deliveries are attempted already; choose another status."
	case status != "" && !slices.Contains(deliveryStatuses, status):
		d.Field["replayStatus"] = "Choose a status from the list."
	}
	if len(d.Field) > 0 {
		p.Error = "Correct the fields marked below."
		p.Data = d
		c.render(w, http.StatusBadRequest, "deliveries", *p)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		list, _, more := c.listDeliveries(r, s, p, status, "", since, "", maxReplayCount)
		n := 0
		for _, t := range list {
			if t.Status != "pending" {
				n++
			}
		}
		d.Replay = &replayPreview{Status: status, Since: sinceText, Count: n, More: more}
		p.Data = d
		c.render(w, http.StatusOK, "deliveries", *p)
		return
	}
	body := map[string]string{}
	if status != "" {
		body["status"] = status
	}
	if !since.IsZero() {
		body["since"] = since.Format(time.RFC3339)
	}
	code, resp := c.call(r, s, "POST", apiPath(p.Org, "/deliveries/replay"), body)
	if code != http.StatusOK {
		e, _ := fieldErrors(resp)
		p.Error = e.Message
		p.Data = d
		c.render(w, code, "deliveries", *p)
		return
	}
	var out struct{ Requeued int }
	_ = json.Unmarshal(resp, &out)
	noun := "deliveries"
	if out.Requeued == 1 {
		noun = "delivery"
	}
	c.done(w, r, p.path("/deliveries"), fmt.Sprintf("%d %s requeued.", out.Requeued, noun))
}

// ---- OAuth clients ----

type client struct {
	ClientID  string    `json:"clientId"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"createdAt"`
}

type clientsData struct {
	Clients   []client
	AllScopes []string
	Name      string
	Scopes    []string
	Created   *struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
		Name         string `json:"name"`
	}
	Field map[string]string
}

var allScopes = []string{"subscribe", "publish", "otp", "admin"}

func (c *Console) clientsData(r *http.Request, s *session, p *page) clientsData {
	d := clientsData{AllScopes: allScopes, Field: map[string]string{}}
	var out struct {
		Clients []client `json:"clients"`
	}
	if c.getJSON(r, s, p, apiPath(p.Org, "/clients"), &out) {
		d.Clients = out.Clients
	}
	return d
}

func (c *Console) clientsPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "OAuth clients"
	p.Data = c.clientsData(r, s, p)
	c.render(w, http.StatusOK, "clients", *p)
}

func (c *Console) clientCreate(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "OAuth clients"
	name, scopes := strings.TrimSpace(r.PostFormValue("name")), r.PostForm["scopes"]
	status, body := c.call(r, s, "POST", apiPath(p.Org, "/clients"), map[string]any{"name": name, "scopes": append([]string{}, scopes...)})
	d := c.clientsData(r, s, p)
	if status == http.StatusCreated {
		// The secret is shown on this answer only: it is never stored in
		// clear, and reloading the page does not show it again.
		_ = json.Unmarshal(body, &d.Created)
		p.Flash = "Client created. Copy its secret now: it is not shown again."
		p.Data = d
		c.render(w, http.StatusCreated, "clients", *p)
		return
	}
	e, fields := fieldErrors(body)
	d.Name, d.Scopes = name, scopes
	if fields != nil {
		d.Field = fields
		p.Error = "Correct the fields marked below."
	} else {
		p.Error = e.Message
	}
	p.Data = d
	c.render(w, http.StatusBadRequest, "clients", *p)
}

func (c *Console) clientDelete(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	status, body := c.call(r, s, "DELETE", apiPath(p.Org, "/clients/"+url.PathEscape(r.PathValue("id"))), nil)
	if status != http.StatusNoContent {
		e, _ := fieldErrors(body)
		p.Title = "OAuth clients"
		p.Error = e.Message
		p.Data = c.clientsData(r, s, p)
		c.render(w, status, "clients", *p)
		return
	}
	c.done(w, r, p.path("/clients"), "Client deleted: its tokens stop working.")
}

// ---- Audit log ----

type auditData struct {
	Entries []audit.EntryJSON
	Next    string
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Audit log"
	path := "/api/v1/audit-log"
	if p.Org != "" {
		path = apiPath(p.Org, "/audit-log")
	}
	q := url.Values{"limit": {"100"}}
	if b := r.URL.Query().Get("before"); b != "" {
		q.Set("before", b)
	}
	var out audit.ListJSON
	d := auditData{}
	if c.getJSON(r, s, p, path+"?"+q.Encode(), &out) {
		d.Entries, d.Next = out.Entries, out.NextCursor
	}
	p.Data = d
	c.render(w, http.StatusOK, "audit", *p)
}

// ---- Platform: organizations and console users ----

type orgsData struct {
	Orgs []struct {
		ID        int64     `json:"id"`
		Name      string    `json:"name"`
		CreatedAt time.Time `json:"createdAt"`
	} `json:"orgs"`
	Name  string
	Field map[string]string
}

func (c *Console) orgsData(r *http.Request, s *session, p *page) orgsData {
	var d orgsData
	c.getJSON(r, s, p, "/api/v1/orgs", &d)
	d.Field = map[string]string{}
	return d
}

func (c *Console) orgsPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Organizations"
	p.Data = c.orgsData(r, s, p)
	c.render(w, http.StatusOK, "orgs", *p)
}

func (c *Console) orgCreate(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	status, body := c.call(r, s, "POST", "/api/v1/orgs", map[string]string{"name": name})
	if status == http.StatusCreated {
		c.done(w, r, "/console/platform/orgs", "Organization "+name+" created.")
		return
	}
	p.Title = "Organizations"
	d := c.orgsData(r, s, p)
	d.Name = name
	e, fields := fieldErrors(body)
	if fields["name"] != "" {
		d.Field["name"] = fields["name"]
	} else {
		d.Field["name"] = e.Message
	}
	p.Error = "The organization was not created."
	p.Data = d
	c.render(w, status, "orgs", *p)
}

type usersData struct {
	Users       []userRow
	Invitations []invitationRow
	Email, Org  string
	Link        string
	Field       map[string]string
}

type userRow struct {
	ID                       int64
	Email, Name, Org, Mobile string
	CreatedAt                time.Time
}

type invitationRow struct {
	Email, Org, CreatedBy string
	ExpiresAt             time.Time
}

// usersData lists the console users and open invitations: all of them on
// the platform page, the org's on an org's Team page.
func (c *Console) usersData(r *http.Request, p *page) usersData {
	d := usersData{Field: map[string]string{}}
	mine := func(orgID int64) bool { return p.Org == "" || orgID == p.orgID }
	names := map[int64]string{0: "platform admin"}
	users, err := c.st.ListConsoleUsers(r.Context())
	if err != nil {
		p.Error = "The console is unavailable; try again."
		return d
	}
	orgName := func(id int64) string {
		if n, ok := names[id]; ok {
			return n
		}
		o, err := c.st.GetOrgByID(r.Context(), id)
		if err != nil {
			return fmt.Sprint(id)
		}
		names[id] = o.Name
		return o.Name
	}
	for _, u := range users {
		if !mine(u.OrgID) {
			continue
		}
		d.Users = append(d.Users, userRow{u.ID, u.Email, u.Name, orgName(u.OrgID), maskMobile(u.Mobile), u.CreatedAt})
	}
	invs, _ := c.st.ListInvitations(r.Context(), c.cfg.Now())
	for _, inv := range invs {
		if inv.Email == "" || !mine(inv.OrgID) {
			continue // the first admin's setup link, or another org's
		}
		d.Invitations = append(d.Invitations, invitationRow{inv.Email, orgName(inv.OrgID), inv.CreatedBy, inv.ExpiresAt})
	}
	return d
}

// maskMobile shows the last digits of a number only.
func maskMobile(m string) string {
	if len(m) < 6 {
		return m
	}
	return m[:3] + strings.Repeat("•", len(m)-6) + m[len(m)-3:]
}

func (c *Console) usersPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = usersTitle(p)
	p.Data = c.usersData(r, p)
	c.render(w, http.StatusOK, "users", *p)
}

func usersTitle(p *page) string {
	if p.Org != "" {
		return "Team"
	}
	return "Console users"
}

// userInvite makes an invitation link; the inviting admin hands it to the
// person (otphub sends no email). On an org's Team page it invites an
// admin of that org.
func (c *Console) userInvite(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = usersTitle(p)
	d := c.usersData(r, p)
	d.Email, d.Org = strings.ToLower(strings.TrimSpace(r.PostFormValue("email"))), r.PostFormValue("org")
	if p.Org != "" {
		d.Org = p.Org
	}
	if !emailPattern.MatchString(d.Email) {
		d.Field["email"] = "Enter an email address such as admin@example.com."
	} else if _, err := c.st.GetConsoleUserByEmail(r.Context(), d.Email); err == nil {
		d.Field["email"] = "A console user with this email exists already."
	}
	var orgID int64
	if d.Org != "" {
		// Through the API: the same check of the org the API makes.
		var o struct{ ID int64 }
		if !c.getJSON(r, s, &page{}, apiPath(d.Org, ""), &o) {
			d.Field["org"] = "Choose an organization from the list."
		}
		orgID = o.ID
	}
	if len(d.Field) > 0 {
		p.Error = "Correct the fields marked below."
		p.Data = d
		c.render(w, http.StatusBadRequest, "users", *p)
		return
	}
	link, _, err := c.Invite(r.Context(), d.Email, orgID, s.user.Email)
	if err != nil {
		c.log.Error("invite", "err", err)
		p.Error = "The invitation could not be created; try again."
		p.Data = d
		c.render(w, http.StatusServiceUnavailable, "users", *p)
		return
	}
	c.audit.Append(r.Context(), auditInvite(d.Org, s, d.Email, c.audit.ClientIP(r)))
	d = c.usersData(r, p)
	d.Link = link
	p.Flash = "Invitation created. Send this link to " + r.PostFormValue("email") + "; it works once, until " +
		c.cfg.Now().Add(c.cfg.InvitationTTL).UTC().Format("2006-01-02 15:04 UTC") + "."
	p.Data = d
	c.render(w, http.StatusCreated, "users", *p)
}
