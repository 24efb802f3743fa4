// Package audit keeps the audit log: who changed what, when and from
// where, for every change made through the API or the console. Its
// middleware records each state-changing API request once the handler has
// answered (the console calls the same handlers in process, so its
// changes are recorded the same way); the console also appends its own
// events (sign-ins, invitations). The log is readable through
// GET /api/v1/orgs/{org}/audit-log and, for the platform admin,
// GET /api/v1/audit-log.
package audit

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/store"
)

// Config configures the Log.
type Config struct {
	// TrustProxyHeaders takes the client address from X-Forwarded-For (see
	// httpx.ClientIP).
	TrustProxyHeaders bool
	Now               func() time.Time
}

// Log records and serves the audit log.
type Log struct {
	cfg Config
	st  store.Store
	v   access.Verifier
	log *slog.Logger
}

// New returns the Log over st; v identifies the callers of API requests.
func New(cfg Config, st store.Store, v access.Verifier, logger *slog.Logger) *Log {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Log{cfg: cfg, st: st, v: v, log: logger.With("component", "audit")}
}

// Append records e, filling its time. A failure is logged, never returned:
// the change it describes has been made already.
func (l *Log) Append(ctx context.Context, e store.AuditEntry) {
	if e.At.IsZero() {
		e.At = l.cfg.Now().UTC()
	}
	if err := l.st.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		l.log.Error("audit entry not recorded", "action", e.Action, "actor", e.Actor, "err", err)
	}
}

// ClientIP is the address an entry records for r.
func (l *Log) ClientIP(r *http.Request) string { return httpx.ClientIP(r, l.cfg.TrustProxyHeaders) }

// hubFormLimit is how much of a POST /hub body the middleware reads to
// tell a subscription's mode and callback (the hub itself takes 16 KiB).
const hubFormLimit = 16 << 10

// Middleware records the state-changing requests mux routes: every
// POST, PUT, PATCH and DELETE under /api/v1/ and WebSub subscribe and
// unsubscribe requests on /hub, by an authenticated caller, with the status
// they were answered. Not recorded: end-user traffic (SMS OTP challenges
// and backup codes, event publishing), and requests without valid
// credentials (so an anonymous flood cannot fill the log).
func (l *Log) Middleware(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		action, ok := auditedRoute(r.Method, pattern)
		if !ok {
			mux.ServeHTTP(w, r)
			return
		}
		var form url.Values
		if pattern == "POST /hub" {
			if r.URL.Query().Get("hub.mode") == "publish" {
				mux.ServeHTTP(w, r)
				return
			}
			form = peekForm(r)
		}
		p, ok := l.principal(r)
		if !ok {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusWriter{StatusRecorder: httpx.StatusRecorder{ResponseWriter: w}}
		mux.ServeHTTP(rec, r)
		e := store.AuditEntry{
			Org: r.PathValue("org"), Actor: p.Actor(), Action: action, Target: r.URL.Path,
			Status: rec.Code(), IP: l.ClientIP(r), RequestID: w.Header().Get("X-Request-Id"),
		}
		if form != nil {
			mode := form.Get("hub.mode")
			if mode != "subscribe" && mode != "unsubscribe" {
				return
			}
			e.Action = "websub." + mode
			e.Target = form.Get("hub.callback")
			e.Org = topicOrg(form.Get("hub.topic"))
		}
		if pattern == "POST /api/v1/orgs" && rec.Code() < 300 {
			e.Target = "/api/v1/orgs/" + rec.created
		}
		l.Append(r.Context(), e)
	})
}

// auditedRoute tells whether requests of method on pattern are recorded,
// and the action they are recorded as.
func auditedRoute(method, pattern string) (string, bool) {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return "", false
	}
	_, path, _ := strings.Cut(pattern, " ")
	switch {
	case path == "/hub":
		return pattern, true
	case !strings.HasPrefix(path, "/api/v1/"):
		return "", false
	case strings.Contains(path, "/sms-otp/challenges"), strings.Contains(path, "/backup-codes"):
		return "", false
	}
	return pattern, true
}

// principal identifies the caller the way access.Authenticate will.
func (l *Log) principal(r *http.Request) (access.Principal, bool) {
	if p, ok := access.InProcessPrincipal(r.Context()); ok {
		return p, true
	}
	tok, ok := access.BearerToken(r)
	if !ok {
		return access.Principal{}, false
	}
	p, err := l.v.Verify(r.Context(), tok)
	return p, err == nil
}

// peekForm reads the form of a /hub request and puts the body back.
func peekForm(r *http.Request) url.Values {
	body, err := io.ReadAll(io.LimitReader(r.Body, hubFormLimit+1))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
	form, _ := url.ParseQuery(r.URL.RawQuery)
	if err != nil || len(body) > hubFormLimit {
		return form
	}
	if ct := r.Header.Get("Content-Type"); ct == "" || strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		if bf, err := url.ParseQuery(string(body)); err == nil {
			for k, v := range bf {
				form[k] = append(v, form[k]...)
			}
		}
	}
	return form
}

// topicOrg is the org of a WebSub topic URL (…/topics/{org}/NOTIFICATIONS
// or {org}-NOTIFICATIONS), "" when it names none.
func topicOrg(topic string) string {
	if i := strings.Index(topic, "/topics/"); i >= 0 {
		org, _, _ := strings.Cut(topic[i+len("/topics/"):], "/")
		return org
	}
	org, ok := strings.CutSuffix(topic, "-NOTIFICATIONS")
	if !ok {
		return ""
	}
	return org
}

// statusWriter records the status and, for a 201, the name of the org a
// POST /api/v1/orgs created.
type statusWriter struct {
	httpx.StatusRecorder
	created string
	buf     []byte
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.Code() == http.StatusCreated && len(w.buf) < 1024 {
		w.buf = append(w.buf, b...)
		if _, after, ok := bytes.Cut(w.buf, []byte(`"name":"`)); ok {
			if name, _, ok := bytes.Cut(after, []byte(`"`)); ok {
				w.created = string(name)
			}
		}
	}
	return w.StatusRecorder.Write(b)
}

// Register adds the audit log API to mux.
func (l *Log) Register(mux httpx.Mux, v access.Verifier) {
	mux.Handle("GET /api/v1/orgs/{org}/audit-log", orgs.Scoped(v, access.ScopeAdmin, l.st, l.log)(l.handleList))
	mux.Handle("GET /api/v1/audit-log", access.Authenticate(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, _ := access.FromContext(r.Context()); !p.PlatformAdmin {
			httpx.Error(w, http.StatusForbidden, "forbidden", "only the platform admin may read the whole audit log")
			return
		}
		l.handleList(w, r)
	})))
}

// EntryJSON is an audit entry as the API shows it.
type EntryJSON struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Org       string    `json:"org,omitempty"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Target    string    `json:"target"`
	Status    int       `json:"status,omitempty"`
	IP        string    `json:"ip,omitempty"`
	RequestID string    `json:"requestId,omitempty"`
}

// ListJSON is a page of the audit log.
type ListJSON struct {
	Entries    []EntryJSON `json:"entries"`
	NextCursor string      `json:"nextCursor,omitempty"`
}

// MaxListLimit caps a page of the audit log.
const MaxListLimit = 1000

func (l *Log) handleList(w http.ResponseWriter, r *http.Request) {
	f := store.AuditFilter{Limit: 100}
	if o, ok := orgs.From(r.Context()); ok {
		f.Org = o.Name
	} else {
		f.AllOrgs = true
	}
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			httpx.Error(w, http.StatusBadRequest, "invalid_limit", "limit must be an integer from 1 to "+strconv.Itoa(MaxListLimit))
			return
		}
		f.Limit = n
	}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			httpx.Error(w, http.StatusBadRequest, "invalid_cursor", "before must be a nextCursor value of an earlier page")
			return
		}
		f.BeforeID = n
	}
	entries, err := l.st.ListAudit(r.Context(), f)
	if err != nil {
		l.log.Error("list audit log", "err", err)
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
		return
	}
	out := ListJSON{Entries: make([]EntryJSON, 0, len(entries))}
	for _, e := range entries {
		out.Entries = append(out.Entries, EntryJSON{e.ID, e.At.UTC(), e.Org, e.Actor, e.Action, e.Target, e.Status, e.IP, e.RequestID})
	}
	if len(entries) == f.Limit {
		out.NextCursor = strconv.FormatInt(entries[len(entries)-1].ID, 10)
	}
	httpx.JSON(w, http.StatusOK, out)
}
