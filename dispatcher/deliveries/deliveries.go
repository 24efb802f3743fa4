// Package deliveries is the deliveries API: an org admin's view of its
// delivery tasks (their status and attempt log) and the retry and replay
// of finished ones. It reads and requeues tasks in the store; the engine
// (package dispatcher) picks requeued tasks up like any other due retry,
// so an API-only replica runs no engine.
package deliveries

import (
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
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/store"
)

// Config configures the API.
type Config struct {
	// ReplayWindow is the expiry bound given to a task requeued by retry
	// or replay (its OTP has usually expired by then; the operator asked
	// for the delivery anyway). Default DefaultReplayWindow.
	ReplayWindow time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

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
//	GET  /api/v1/orgs/{org}/deliveries/{id}
//	POST /api/v1/orgs/{org}/deliveries/{id}/retry
//	POST /api/v1/orgs/{org}/deliveries/replay   {"status":"dead"} | {"since":"RFC 3339"}
//
// Responses never carry the event itself (it holds the OTP and the mobile
// number).
func (a *API) Register(mux httpx.Mux, v access.Verifier) {
	admin := func(h http.HandlerFunc) http.Handler {
		return access.Authenticate(v, access.Require(access.ScopeAdmin, orgs.With(a.st, a.log, h)))
	}
	mux.Handle("GET /api/v1/orgs/{org}/deliveries", admin(a.listDeliveries))
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

func (a *API) retryDelivery(w http.ResponseWriter, r *http.Request) {
	t, _, ok := a.task(w, r)
	if !ok {
		return
	}
	if t.Status == store.DeliveryPending {
		httpx.Error(w, http.StatusConflict, "delivery_pending", "the delivery is already waiting for its next attempt")
		return
	}
	now := a.cfg.Now()
	err := a.st.RequeueDelivery(r.Context(), t.OrgID, t.ID, now, now.Add(a.cfg.ReplayWindow))
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

// MaxReplayBody caps the replay request body.
const MaxReplayBody = 1 << 10

func (a *API) replayDeliveries(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	var body struct {
		Status string `json:"status"`
		Since  string `json:"since"`
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
	n, err := a.st.RequeueDeliveries(r.Context(), org.ID, statuses, since, now, now.Add(a.cfg.ReplayWindow))
	if err != nil {
		a.internal(w, "requeue deliveries", err)
		return
	}
	a.log.Info("deliveries replayed", "org", org.Name, "statuses", statuses, "since", since, "count", n)
	httpx.JSON(w, http.StatusOK, map[string]int{"requeued": n})
}

func (a *API) internal(w http.ResponseWriter, what string, err error) {
	a.log.Error("deliveries API", "op", what, "err", err)
	httpx.Error(w, http.StatusInternalServerError, "internal", "internal error")
}
