package smsprovider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/smsprovider/provider"
	"github.com/otphub/otphub/store"
)

// maxTestMessage bounds a test SMS's text (10 concatenated parts).
const maxTestMessage = 1600

// Register adds the provider config API (org admin scope):
//
//	PUT|GET|DELETE /api/v1/orgs/{org}/sms-provider           the primary slot
//	PUT|GET|DELETE /api/v1/orgs/{org}/sms-provider/fallback  the fallback slot
//	POST           /api/v1/orgs/{org}/sms-provider/test      send a test SMS
func (s *Service) Register(mux httpx.Mux, v access.Verifier) {
	admin := orgs.Scoped(v, access.ScopeAdmin, s.st, s.log)
	for path, slot := range map[string]string{
		"/api/v1/orgs/{org}/sms-provider":          store.ProviderPrimary,
		"/api/v1/orgs/{org}/sms-provider/fallback": store.ProviderFallback,
	} {
		mux.Handle("PUT "+path, admin(func(w http.ResponseWriter, r *http.Request) { s.handlePut(w, r, slot) }))
		mux.Handle("GET "+path, admin(func(w http.ResponseWriter, r *http.Request) { s.handleGet(w, r, slot) }))
		mux.Handle("DELETE "+path, admin(func(w http.ResponseWriter, r *http.Request) { s.handleDelete(w, r, slot) }))
	}
	mux.Handle("POST /api/v1/orgs/{org}/sms-provider/test", admin(s.handleTest))
}

func org(r *http.Request) store.Org {
	o, _ := orgs.From(r.Context())
	return o
}

func (s *Service) internalError(w http.ResponseWriter, r *http.Request, msg string, err error) {
	s.log.ErrorContext(r.Context(), msg, "org", org(r).Name, "err", err)
	httpx.Error(w, http.StatusInternalServerError, "internal", "internal error")
}

func notConfigured(w http.ResponseWriter, slot string) {
	httpx.Error(w, http.StatusNotFound, "provider_not_configured", fmt.Sprintf("no SMS provider is configured in the %s slot", slot))
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request, slot string) {
	sp, err := s.load(r.Context(), org(r).ID, slot)
	if errors.Is(err, store.ErrNotFound) {
		notConfigured(w, slot)
		return
	}
	if err != nil {
		s.internalError(w, r, "load sms provider", err)
		return
	}
	s.answer(w, r, sp)
}

func (s *Service) answer(w http.ResponseWriter, r *http.Request, sp stored) {
	out, err := s.view(sp, org(r).Name)
	if err != nil {
		s.internalError(w, r, "encode sms provider", err)
		return
	}
	httpx.JSON(w, http.StatusOK, out)
}

func (s *Service) handlePut(w http.ResponseWriter, r *http.Request, slot string) {
	var raw map[string]json.RawMessage
	if err := httpx.DecodeJSON(w, r, &raw, 0); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	p, cfg, err := s.parse(raw)
	if err != nil {
		writeFieldError(w, err)
		return
	}
	o := org(r)
	old, err := s.load(r.Context(), o.ID, slot)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "load sms provider", err)
		return
	}
	var same provider.Config // the stored configuration, when of the same type
	if old.p != nil && old.p.Type() == p.Type() {
		same = old.cfg
	}
	if err := cfg.KeepSecrets(same); err != nil {
		writeFieldError(w, err)
		return
	}
	if err := cfg.Validate(r.Context(), s.env); err != nil {
		writeFieldError(w, err)
		return
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		s.internalError(w, r, "encode sms provider", err)
		return
	}
	row := store.SMSProvider{OrgID: o.ID, Slot: slot, Type: p.Type(), Config: b, UpdatedAt: s.cfg.Now().UTC()}
	if err := s.st.PutSMSProvider(r.Context(), row); err != nil {
		s.internalError(w, r, "store sms provider", err)
		return
	}
	s.invalidate(o.ID)
	s.log.InfoContext(r.Context(), "sms provider saved", "org", o.Name, "slot", slot, "type", p.Type())
	s.answer(w, r, stored{p: p, cfg: cfg, row: row})
}

func writeFieldError(w http.ResponseWriter, err error) {
	var fe *provider.FieldError
	if errors.As(err, &fe) {
		httpx.ErrorWith(w, http.StatusBadRequest, "invalid_provider_config", fe.Error(), map[string]any{"field": fe.Field})
		return
	}
	httpx.WriteDecodeError(w, err)
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request, slot string) {
	o := org(r)
	err := s.st.DeleteSMSProvider(r.Context(), o.ID, slot)
	if errors.Is(err, store.ErrNotFound) {
		notConfigured(w, slot)
		return
	}
	if err != nil {
		s.internalError(w, r, "delete sms provider", err)
		return
	}
	s.invalidate(o.ID)
	s.log.InfoContext(r.Context(), "sms provider deleted", "org", o.Name, "slot", slot)
	w.WriteHeader(http.StatusNoContent)
}

// TestRequest is the body of POST …/sms-provider/test.
type TestRequest struct {
	Mobile  string `json:"mobile"`            // E.164; required
	Message string `json:"message,omitempty"` // default: a fixed test text
	Slot    string `json:"slot,omitempty"`    // primary (default) or fallback
}

// TestResult is the answer of POST …/sms-provider/test: what the provider
// answered (ok false is still a 200: the test ran).
type TestResult struct {
	OK                bool   `json:"ok"`
	StatusCode        int    `json:"statusCode"`
	Reason            string `json:"reason"`
	ProviderMessageID string `json:"providerMessageId"`
	Error             string `json:"error"`
}

func (s *Service) handleTest(w http.ResponseWriter, r *http.Request) {
	var req TestRequest
	if err := httpx.DecodeJSON(w, r, &req, 8<<10); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	if req.Slot == "" {
		req.Slot = store.ProviderPrimary
	}
	o := org(r)
	switch {
	case req.Slot != store.ProviderPrimary && req.Slot != store.ProviderFallback:
		httpx.ErrorWith(w, http.StatusBadRequest, "invalid_request", "slot must be primary or fallback", map[string]any{"field": "slot"})
		return
	case !event.ValidMobile(req.Mobile):
		httpx.ErrorWith(w, http.StatusBadRequest, "invalid_mobile", "mobile must be an E.164 number such as +94771234567", map[string]any{"field": "mobile"})
		return
	case !utf8.ValidString(req.Message) || utf8.RuneCountInString(req.Message) > maxTestMessage:
		httpx.ErrorWith(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("message must be valid text of at most %d characters", maxTestMessage), map[string]any{"field": "message"})
		return
	}
	if req.Message == "" {
		req.Message = "otphub test message for " + o.Name + ": your SMS provider works."
	}
	sp, err := s.load(r.Context(), o.ID, req.Slot)
	if errors.Is(err, store.ErrNotFound) {
		notConfigured(w, req.Slot)
		return
	}
	if err != nil {
		s.internalError(w, r, "load sms provider", err)
		return
	}
	if ok, wait := s.testCap.Allow(o.ID); !ok {
		httpx.RetryAfter(w, wait)
		httpx.Error(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("at most %d test SMS per minute", s.cfg.TestSendsPerMinute))
		return
	}
	sender, _ := s.sender(sp, false) // a test send asks for no receipts
	now := s.cfg.Now()
	ev := &event.SmsOtpNotificationEvent{ID: uuid.NewString(), IssuedAt: now, OrganizationID: o.ID,
		OrganizationName: o.Name, SendTo: req.Mobile, MessageBody: req.Message, ExpiresAt: now.Add(event.DefaultOTPValidity)}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.TestTimeout)
	defer cancel()
	res := sender.Send(ctx, ev)
	out := TestResult{OK: res.OK, StatusCode: res.StatusCode, Reason: string(res.Reason), ProviderMessageID: res.ProviderID}
	if res.Err != nil {
		out.Error = res.Err.Error()
	}
	outcome := "ok"
	if !res.OK {
		outcome = "failed"
	}
	s.tests.WithLabelValues(outcome).Inc()
	s.log.InfoContext(r.Context(), "sms provider test", "org", o.Name, "slot", req.Slot, "type", sp.row.Type,
		"ok", res.OK, "reason", string(res.Reason), "status", res.StatusCode)
	httpx.JSON(w, http.StatusOK, out)
}

var _ delivery.Resolver = resolver{}
