package websub

import (
	"errors"
	"net/http"
	"time"

	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/store"
)

// stateExpired is the state the API shows for an active subscription
// whose lease has ended.
const stateExpired = "expired"

// SubscriptionView is a subscription as the API shows it: never its secret.
type SubscriptionView struct {
	ID           string     `json:"id"`
	Topic        string     `json:"topic"`
	Callback     string     `json:"callback"`
	State        string     `json:"state"`
	LeaseSeconds int        `json:"leaseSeconds"`
	ExpiresAt    *time.Time `json:"expiresAt,omitempty"`
	Format       string     `json:"format"`
	SignatureAlg string     `json:"signatureAlg"`
	HasSecret    bool       `json:"hasSecret"`
	// AutoRenew: the subscriber asked for no lease, so the hub renews it
	// by verifying intent again before it ends.
	AutoRenew bool `json:"autoRenew"`
	// PreviousSecretUntil: a re-subscription rotated the secret, and
	// deliveries stay signed under the replaced one too until then
	// (docs/websub.md, "Secret rotation"); absent once that has passed.
	PreviousSecretUntil *time.Time `json:"previousSecretUntil,omitempty"`
	CreatedAt           time.Time  `json:"createdAt"`
	UpdatedAt           time.Time  `json:"updatedAt"`
}

// viewOf shows s as of now: an active subscription whose lease has ended
// is "expired" (it receives nothing) until the sweep deletes it.
func viewOf(s store.Subscription, now time.Time) SubscriptionView {
	v := SubscriptionView{
		ID: s.ID, Topic: s.Topic, Callback: s.Callback, State: s.State,
		LeaseSeconds: s.LeaseSeconds, Format: s.Format, SignatureAlg: s.SignatureAlg,
		HasSecret: len(s.Secret) > 0, AutoRenew: s.AutoRenew, CreatedAt: s.CreatedAt.UTC(), UpdatedAt: s.UpdatedAt.UTC(),
	}
	if v.Format == "" {
		v.Format = "asgardeo"
	}
	if len(s.PreviousSecret) > 0 && now.Before(s.PreviousSecretUntil) {
		t := s.PreviousSecretUntil.UTC()
		v.PreviousSecretUntil = &t
	}
	if v.SignatureAlg == "" {
		v.SignatureAlg = "sha256"
	}
	if !s.ExpiresAt.IsZero() {
		t := s.ExpiresAt.UTC()
		v.ExpiresAt = &t
		if v.State == store.SubActive && !now.Before(t) {
			v.State = stateExpired
		}
	}
	return v
}

// orgOf loads the {org} of the path as every org API does (orgs.Resolve:
// 404 org_not_found, 503 unavailable). On failure it has written the error.
func (h *Hub) orgOf(w http.ResponseWriter, r *http.Request) (store.Org, bool) {
	org, err := orgs.Resolve(r.Context(), h.st, r.PathValue("org"))
	if err != nil {
		orgs.WriteError(w, h.log, err)
		return store.Org{}, false
	}
	return org, true
}

// handleList serves GET /api/v1/orgs/{org}/subscriptions.
func (h *Hub) handleList(w http.ResponseWriter, r *http.Request) {
	org, ok := h.orgOf(w, r)
	if !ok {
		return
	}
	subs, err := h.st.ListSubscriptions(r.Context(), org.ID)
	if err != nil {
		h.log.Error("listing subscriptions failed", "err", err)
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
		return
	}
	out := make([]SubscriptionView, 0, len(subs))
	for _, s := range subs {
		out = append(out, viewOf(s, h.cfg.Now()))
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"subscriptions": out})
}

// handleGet serves GET /api/v1/orgs/{org}/subscriptions/{id}.
func (h *Hub) handleGet(w http.ResponseWriter, r *http.Request) {
	if _, s, ok := h.subscriptionOf(w, r); ok {
		httpx.JSON(w, http.StatusOK, viewOf(s, h.cfg.Now()))
	}
}

// subscriptionOf loads the request's org and its subscription {id}, or
// answers the error (another org's subscription is not found, like a
// missing one) and reports false.
func (h *Hub) subscriptionOf(w http.ResponseWriter, r *http.Request) (store.Org, store.Subscription, bool) {
	org, ok := h.orgOf(w, r)
	if !ok {
		return store.Org{}, store.Subscription{}, false
	}
	s, err := h.st.GetSubscription(r.Context(), org.ID, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "subscription_not_found", "no such subscription")
		return store.Org{}, store.Subscription{}, false
	}
	if err != nil {
		h.log.Error("loading a subscription failed", "err", err)
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
		return store.Org{}, store.Subscription{}, false
	}
	return org, s, true
}

// handleDelete serves DELETE /api/v1/orgs/{org}/subscriptions/{id}: the
// subscription ends at once, without verification of intent (the caller
// holds the org's subscribe or admin scope).
func (h *Hub) handleDelete(w http.ResponseWriter, r *http.Request) {
	org, ok := h.orgOf(w, r)
	if !ok {
		return
	}
	err := h.st.DeleteSubscription(r.Context(), org.ID, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "subscription_not_found", "no such subscription")
		return
	}
	if err != nil {
		h.log.Error("deleting a subscription failed", "err", err)
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
		return
	}
	h.res.invalidate(org.Name)
	h.markChanged()
	w.WriteHeader(http.StatusNoContent)
}
