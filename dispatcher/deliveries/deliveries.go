// Package deliveries is the deliveries API: an org admin's view of its
// delivery tasks (their status and attempt log) and the retry and replay
// of finished ones. It reads and requeues tasks in the store; the engine
// (package dispatcher) picks requeued tasks up like any other due retry,
// so an API-only replica runs no engine.
package deliveries

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub/webhook"
)

// Config configures the API.
type Config struct {
	// ReplayWindow is the expiry bound given to a task requeued by retry
	// or replay (its OTP has usually expired by then; the operator asked
	// for the delivery anyway). Default DefaultReplayWindow.
	ReplayWindow time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Policy, if set, charges every replayed SMS to the org's budgets
	// (*smspolicy.Guard): a replay over budget, or of a number the org's
	// policy now refuses, is not requeued.
	Policy Policy
}

// Policy charges a replayed SMS (smspolicy.Guard.Replay).
type Policy interface {
	Replay(ctx context.Context, orgID int64, eventID, number string, until time.Time) (refusal string, overBudget bool, err error)
}

// MaxReplaySMS bounds the SMS deliveries one bulk replay requeues (each is
// charged and requeued on its own); the answer says when more are left.
const MaxReplaySMS = 1000

// DefaultReplayWindow is the default Config.ReplayWindow.
const DefaultReplayWindow = 10 * time.Minute

// Store is what the API needs of the store.
type Store interface {
	store.Deliveries
	orgs.Getter
}

// API serves the deliveries endpoints.
type API struct {
	cfg Config
	st  Store
	log *slog.Logger
}

// New returns the API over st.
func New(cfg Config, st Store, logger *slog.Logger) (*API, error) {
	if st == nil {
		return nil, errors.New("deliveries: nil store")
	}
	if cfg.ReplayWindow < 0 {
		return nil, errors.New("deliveries: ReplayWindow must not be negative")
	}
	if cfg.ReplayWindow == 0 {
		cfg.ReplayWindow = DefaultReplayWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &API{cfg: cfg, st: st, log: logger.With("component", "deliveries")}, nil
}

// Register adds the deliveries API (org admin scope) to mux:
//
//	GET  /api/v1/orgs/{org}/deliveries?status=&limit=&before=
//	GET  /api/v1/orgs/{org}/deliveries/stats?hours=
//	GET  /api/v1/orgs/{org}/deliveries/{id}
//	POST /api/v1/orgs/{org}/deliveries/{id}/retry   [{"redeliverDelivered":true}]
//	POST /api/v1/orgs/{org}/deliveries/replay   {"status":"dead"} | {"since":"RFC 3339"} [, "redeliverDelivered":true]
//
// Retrying or replaying an SMS delivery sends an SMS again: each one is
// charged to the org's SMS budgets, and one already delivered is only
// replayed when the request says "redeliverDelivered": true.
//
// Responses never carry the event itself (it holds the OTP and the mobile
// number).
func (a *API) Register(mux httpx.Mux, v access.Verifier) {
	admin := orgs.Scoped(v, access.ScopeAdmin, a.st, a.log)
	mux.Handle("GET /api/v1/orgs/{org}/deliveries", admin(a.listDeliveries))
	mux.Handle("GET /api/v1/orgs/{org}/deliveries/stats", admin(a.getStats))
	mux.Handle("GET /api/v1/orgs/{org}/deliveries/{id}", admin(a.getDelivery))
	mux.Handle("POST /api/v1/orgs/{org}/deliveries/{id}/retry", admin(a.retryDelivery))
	mux.Handle("POST /api/v1/orgs/{org}/deliveries/replay", admin(a.replayDeliveries))
}

// deliveryJSON is a delivery task as the API shows it.
type deliveryJSON struct {
	ID              string        `json:"id"`
	EventID         string        `json:"eventId"`
	DestinationType string        `json:"destinationType"`
	DestinationID   string        `json:"destinationId"`
	Status          string        `json:"status"`
	Attempts        int           `json:"attempts"`
	NextAttemptAt   *time.Time    `json:"nextAttemptAt,omitempty"`
	ExpiresAt       *time.Time    `json:"expiresAt,omitempty"`
	LastError       string        `json:"lastError,omitempty"`
	LastStatusCode  int           `json:"lastStatusCode,omitempty"`
	CreatedAt       time.Time     `json:"createdAt"`
	UpdatedAt       time.Time     `json:"updatedAt"`
	Handset         *handsetJSON  `json:"handset,omitempty"`
	AttemptLog      []attemptJSON `json:"attemptLog,omitempty"`
}

// handsetJSON is what delivery receipts said of an SMS delivery.
type handsetJSON struct {
	State             string        `json:"state,omitempty"`
	ProviderMessageID string        `json:"providerMessageId,omitempty"`
	ErrorCode         string        `json:"errorCode,omitempty"`
	AcceptedAt        *time.Time    `json:"acceptedAt,omitempty"`
	QueuedAt          *time.Time    `json:"queuedAt,omitempty"`
	SentAt            *time.Time    `json:"sentAt,omitempty"`
	DeliveredAt       *time.Time    `json:"deliveredAt,omitempty"`
	FailedAt          *time.Time    `json:"failedAt,omitempty"`
	ReceiptDueAt      *time.Time    `json:"receiptDueAt,omitempty"`
	LastReceiptAt     *time.Time    `json:"lastReceiptAt,omitempty"`
	Receipts          int           `json:"receipts"`
	Failover          *failoverJSON `json:"failover,omitempty"`
}

type failoverJSON struct {
	Status string    `json:"status"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

func handsetOut(h *store.SMSReceipt) *handsetJSON {
	if h == nil {
		return nil
	}
	out := &handsetJSON{State: h.State, ProviderMessageID: h.ProviderMessageID, ErrorCode: h.ErrorCode,
		AcceptedAt: optTime(h.AcceptedAt), QueuedAt: optTime(h.QueuedAt), SentAt: optTime(h.SentAt),
		DeliveredAt: optTime(h.DeliveredAt), FailedAt: optTime(h.FailedAt), ReceiptDueAt: optTime(h.ReceiptDueAt),
		LastReceiptAt: optTime(h.LastReceiptAt), Receipts: h.Receipts}
	if h.FailoverStatus != "" {
		out.Failover = &failoverJSON{Status: h.FailoverStatus, Reason: h.FailoverReason, At: h.FailoverAt.UTC()}
	}
	return out
}

type attemptJSON struct {
	Number     int       `json:"number"`
	StartedAt  time.Time `json:"startedAt"`
	DurationMS float64   `json:"durationMs"`
	StatusCode int       `json:"statusCode,omitempty"`
	Outcome    string    `json:"outcome"`
	Error      string    `json:"error,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func deliveryOut(t store.DeliveryTask, atts []store.DeliveryAttempt) deliveryJSON {
	out := deliveryJSON{
		ID: t.ID, EventID: t.EventID, DestinationType: t.DestinationType, DestinationID: t.DestinationID,
		Status: t.Status, Attempts: t.Attempts, ExpiresAt: optTime(t.ExpiresAt),
		LastError: t.LastError, LastStatusCode: t.LastStatusCode,
		CreatedAt: t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC(), Handset: handsetOut(t.Handset),
	}
	if t.Status == store.DeliveryPending {
		out.NextAttemptAt = optTime(t.NextAttemptAt)
	}
	for _, a := range atts {
		out.AttemptLog = append(out.AttemptLog, attemptJSON{
			Number: a.Number, StartedAt: a.StartedAt.UTC(), DurationMS: float64(a.Duration.Microseconds()) / 1000,
			StatusCode: a.StatusCode, Outcome: a.Outcome, Error: a.Error,
		})
	}
	return out
}

var taskStatuses = []string{store.DeliveryPending, store.DeliveryDelivered, store.DeliveryFailed, store.DeliveryExpired, store.DeliveryDead}

func validStatus(s string, allowPending bool) bool {
	for _, v := range taskStatuses {
		if s == v {
			return allowPending || s != store.DeliveryPending
		}
	}
	return false
}

// The list cursor is opaque to clients: base64url("<created µs>.<id>") of
// the last task of a page.
func encodeCursor(t store.DeliveryTask) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.CreatedAt.UnixMicro(), 10) + "." + t.ID))
}

func decodeCursor(s string) (time.Time, string, error) {
	if len(s) > 200 {
		return time.Time{}, "", errors.New("too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", err
	}
	us, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || n <= 0 {
		return time.Time{}, "", errors.New("malformed")
	}
	if _, err := uuid.Parse(id); err != nil {
		return time.Time{}, "", errors.New("malformed")
	}
	return time.UnixMicro(n).UTC(), id, nil
}

// maxNameLen bounds a destination type or ID in a filter (subscription IDs
// are UUIDs, provider types and ProviderPrimary short words).
const maxNameLen = 200

// validName reports whether s is a plausible destination type or ID.
func validName(s string) bool {
	if len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// MaxListLimit caps the page size of the deliveries list.
const MaxListLimit = 1000

func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	q := r.URL.Query()
	f := store.DeliveryFilter{Status: q.Get("status"), Limit: 100}
	if f.Status != "" && !validStatus(f.Status, true) {
		httpx.Error(w, http.StatusBadRequest, "invalid_status", "status must be one of "+strings.Join(taskStatuses, ", "))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			httpx.Error(w, http.StatusBadRequest, "invalid_limit", fmt.Sprintf("limit must be an integer from 1 to %d", MaxListLimit))
			return
		}
		f.Limit = n
	}
	f.DestinationType, f.DestinationID = q.Get("destinationType"), q.Get("destinationId")
	switch {
	case f.DestinationID != "" && f.DestinationType == "":
		httpx.Error(w, http.StatusBadRequest, "invalid_destination", "destinationId needs destinationType (webhook, or the SMS provider's type)")
		return
	case !validName(f.DestinationType) || !validName(f.DestinationID):
		httpx.Error(w, http.StatusBadRequest, "invalid_destination", fmt.Sprintf("destinationType and destinationId are at most %d printable ASCII characters", maxNameLen))
		return
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			httpx.Error(w, http.StatusBadRequest, "invalid_since", "since must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
			return
		}
		f.Since = t
	}
	if s := q.Get("before"); s != "" {
		t, id, err := decodeCursor(s)
		if err != nil {
			httpx.Error(w, http.StatusBadRequest, "invalid_cursor", "before must be a nextCursor value of an earlier page")
			return
		}
		f.Before, f.BeforeID = t, id
	}
	tasks, err := a.st.ListDeliveries(r.Context(), org.ID, f)
	if err != nil {
		a.internal(w, "list deliveries", err)
		return
	}
	out := struct {
		Deliveries []deliveryJSON `json:"deliveries"`
		NextCursor string         `json:"nextCursor,omitempty"`
	}{Deliveries: make([]deliveryJSON, 0, len(tasks))}
	for _, t := range tasks {
		out.Deliveries = append(out.Deliveries, deliveryOut(t, nil))
	}
	if len(tasks) == f.Limit {
		out.NextCursor = encodeCursor(tasks[len(tasks)-1])
	}
	httpx.JSON(w, http.StatusOK, out)
}

// task loads the {id} delivery of the request's org, writing 404 when there
// is none.
func (a *API) task(w http.ResponseWriter, r *http.Request) (store.DeliveryTask, []store.DeliveryAttempt, bool) {
	org, _ := orgs.From(r.Context())
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		httpx.Error(w, http.StatusNotFound, "delivery_not_found", "no such delivery")
		return store.DeliveryTask{}, nil, false
	}
	t, atts, err := a.st.GetDelivery(r.Context(), org.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "delivery_not_found", "no such delivery")
		return store.DeliveryTask{}, nil, false
	}
	if err != nil {
		a.internal(w, "get delivery", err)
		return store.DeliveryTask{}, nil, false
	}
	return t, atts, true
}

func (a *API) getDelivery(w http.ResponseWriter, r *http.Request) {
	if t, atts, ok := a.task(w, r); ok {
		httpx.JSON(w, http.StatusOK, deliveryOut(t, atts))
	}
}

// redeliver is the optional body of a retry, and part of a replay's.
type redeliver struct {
	// RedeliverDelivered: replay SMS deliveries that were delivered (each
	// sends the SMS again).
	RedeliverDelivered bool `json:"redeliverDelivered"`
}

func (a *API) retryDelivery(w http.ResponseWriter, r *http.Request) {
	var body redeliver
	if r.ContentLength != 0 {
		if err := httpx.DecodeJSON(w, r, &body, MaxReplayBody); err != nil {
			httpx.WriteDecodeError(w, err)
			return
		}
	}
	t, _, ok := a.task(w, r)
	if !ok {
		return
	}
	if t.Status == store.DeliveryPending {
		httpx.Error(w, http.StatusConflict, "delivery_pending", "the delivery is already waiting for its next attempt")
		return
	}
	now := a.cfg.Now()
	until := now.Add(a.cfg.ReplayWindow)
	if isSMS(t) {
		if t.Status == store.DeliveryDelivered && !body.RedeliverDelivered {
			httpx.Error(w, http.StatusConflict, "delivered_sms",
				`this SMS was delivered; retrying sends it again and counts against the SMS budgets: send {"redeliverDelivered": true} to do so`)
			return
		}
		refusal, over, err := a.chargeSMS(r.Context(), t, until)
		switch {
		case err != nil:
			a.internal(w, "charge the replayed sms", err)
			return
		case over:
			httpx.Error(w, http.StatusTooManyRequests, "rate_limited", "not retried: "+refusal)
			return
		case refusal != "":
			httpx.Error(w, http.StatusConflict, "policy_refused", "not retried: "+refusal)
			return
		}
	}
	err := a.st.RequeueDelivery(r.Context(), t.OrgID, t.ID, now, until)
	switch {
	case errors.Is(err, store.ErrPrecondition):
		httpx.Error(w, http.StatusConflict, "delivery_pending", "the delivery is already waiting for its next attempt")
		return
	case errors.Is(err, store.ErrNotFound):
		httpx.Error(w, http.StatusNotFound, "delivery_not_found", "no such delivery")
		return
	case err != nil:
		a.internal(w, "requeue delivery", err)
		return
	}
	if t2, atts, ok := a.task(w, r); ok {
		httpx.JSON(w, http.StatusAccepted, deliveryOut(t2, atts))
	}
}

// isSMS tells an SMS provider's delivery (each replay sends an SMS, which
// costs money and budget) from a webhook's.
func isSMS(t store.DeliveryTask) bool { return t.DestinationType != webhook.Type }

// chargeSMS charges the SMS a replay of t will send.
func (a *API) chargeSMS(ctx context.Context, t store.DeliveryTask, until time.Time) (refusal string, overBudget bool, err error) {
	if a.cfg.Policy == nil {
		return "", false, nil
	}
	ev, err := delivery.DecodeTaskEvent(t.Event)
	if err != nil {
		return "", false, err
	}
	return a.cfg.Policy.Replay(ctx, t.OrgID, ev.ID, ev.SendTo, until)
}

// MaxReplayBody caps the replay request body.
const MaxReplayBody = 1 << 10

// replayResult is the answer of a bulk replay.
type replayResult struct {
	Requeued int `json:"requeued"` // webhook and SMS deliveries requeued
	// DeliveredSMSSkipped: delivered SMS not replayed, without
	// redeliverDelivered.
	DeliveredSMSSkipped int `json:"deliveredSmsSkipped"`
	// SMSOverBudget and SMSRefused: SMS deliveries not replayed because a
	// budget is spent, or the org's policy now refuses the number.
	SMSOverBudget int `json:"smsOverBudget"`
	SMSRefused    int `json:"smsRefused"`
	// More: MaxReplaySMS SMS deliveries were looked at; replay again for
	// the rest.
	More bool `json:"more,omitempty"`
}

func (a *API) replayDeliveries(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	var body struct {
		Status string `json:"status"`
		Since  string `json:"since"`
		redeliver
	}
	if err := httpx.DecodeJSON(w, r, &body, MaxReplayBody); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	if body.Status == "" && body.Since == "" {
		httpx.Error(w, http.StatusBadRequest, "invalid_request", `give "status" (e.g. "dead": the dead-letter list), "since" (an RFC 3339 time), or both`)
		return
	}
	statuses := []string{store.DeliveryDelivered, store.DeliveryFailed, store.DeliveryExpired, store.DeliveryDead}
	if body.Status != "" {
		if !validStatus(body.Status, false) {
			httpx.Error(w, http.StatusBadRequest, "invalid_status", "status must be one of delivered, failed, expired, dead")
			return
		}
		statuses = []string{body.Status}
	}
	var since time.Time
	if body.Since != "" {
		t, err := time.Parse(time.RFC3339Nano, body.Since)
		if err != nil {
			httpx.Error(w, http.StatusBadRequest, "invalid_since", "since must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
			return
		}
		since = t
	}
	now := a.cfg.Now()
	until := now.Add(a.cfg.ReplayWindow)
	// Webhooks in bulk; SMS one by one, each charged.
	n, err := a.st.RequeueDeliveriesOfType(r.Context(), org.ID, webhook.Type, statuses, since, now, until)
	if err != nil {
		a.internal(w, "requeue deliveries", err)
		return
	}
	res, err := a.replaySMS(r.Context(), org.ID, statuses, since, body.RedeliverDelivered, now, until)
	if err != nil {
		a.internal(w, "replay sms deliveries", err)
		return
	}
	res.Requeued += n
	a.log.Info("deliveries replayed", "org", org.Name, "statuses", statuses, "since", since, "count", res.Requeued,
		"delivered_sms_skipped", res.DeliveredSMSSkipped, "sms_over_budget", res.SMSOverBudget, "sms_refused", res.SMSRefused)
	httpx.JSON(w, http.StatusOK, res)
}

// replaySMS requeues the org's finished SMS deliveries of statuses created
// at or after since, newest first, charging each; delivered ones only with
// redeliverDelivered. It looks at MaxReplaySMS of them at most.
func (a *API) replaySMS(ctx context.Context, orgID int64, statuses []string, since time.Time, redeliverDelivered bool, now, until time.Time) (replayResult, error) {
	var res replayResult
	seen := 0
	for _, status := range statuses {
		f := store.DeliveryFilter{Status: status, Limit: 500}
		for {
			page, err := a.st.ListDeliveries(ctx, orgID, f)
			if err != nil {
				return res, err
			}
			for _, t := range page {
				if t.CreatedAt.Before(since) {
					break
				}
				if !isSMS(t) {
					continue
				}
				if seen == MaxReplaySMS {
					res.More = true
					return res, nil
				}
				seen++
				if t.Status == store.DeliveryDelivered && !redeliverDelivered {
					res.DeliveredSMSSkipped++
					continue
				}
				refusal, over, err := a.chargeSMS(ctx, t, until)
				switch {
				case err != nil:
					return res, err
				case over:
					res.SMSOverBudget++
					continue
				case refusal != "":
					res.SMSRefused++
					continue
				}
				switch err := a.st.RequeueDelivery(ctx, orgID, t.ID, now, until); {
				case err == nil:
					res.Requeued++
				case !errors.Is(err, store.ErrPrecondition) && !errors.Is(err, store.ErrNotFound):
					return res, err
				}
			}
			if len(page) < f.Limit || page[len(page)-1].CreatedAt.Before(since) {
				break
			}
			last := page[len(page)-1]
			f.Before, f.BeforeID = last.CreatedAt, last.ID
		}
	}
	return res, nil
}

func (a *API) internal(w http.ResponseWriter, what string, err error) {
	a.log.Error("deliveries API", "op", what, "err", err)
	httpx.Error(w, http.StatusInternalServerError, "internal", "internal error")
}
