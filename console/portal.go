package console

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/store"
)

// Portal links open chosen sections of one org's console without an
// account, for platforms that run otphub for their own tenants (Svix's App
// Portal, Convoy's portal links). A link is single-use and short-lived;
// opening it starts a portal session of at most portalSessionTTL whose ID
// travels in the path (not in a cookie, so it works inside another site's
// iframe, where browsers withhold SameSite cookies).
const (
	portalSessionTTL     = time.Hour
	defaultPortalLinkTTL = 5 * time.Minute
	maxPortalLinkTTL     = time.Hour
	maxFrameAncestors    = 10
)

// PortalSections are the sections a portal link may open.
var PortalSections = []string{"webhooks", "deliveries"}

type portalView struct {
	Sections []string
}

// RegisterAPI adds the console's API route: POST
// /api/v1/orgs/{org}/portal-links (admin scope; the platform admin too).
func (c *Console) RegisterAPI(mux httpx.Mux, v access.Verifier) {
	mux.Handle("POST /api/v1/orgs/{org}/portal-links", access.Authenticate(v, access.Require(access.ScopeAdmin,
		orgs.With(c.st, c.log, http.HandlerFunc(c.createPortalLink)))))
}

type portalLinkRequest struct {
	Sections         []string `json:"sections"`
	FrameAncestors   []string `json:"frameAncestors"`
	ExpiresInSeconds int      `json:"expiresInSeconds"`
}

type portalLinkJSON struct {
	URL            string    `json:"url"`
	ExpiresAt      time.Time `json:"expiresAt"`
	Sections       []string  `json:"sections"`
	FrameAncestors []string  `json:"frameAncestors"`
}

// checkOriginValue returns why o is not an origin a portal may be framed
// by: https://host[:port], or http:// on a loopback host.
func checkOriginValue(o string) error {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not an origin such as https://app.example.com", o)
	}
	host := u.Hostname()
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil {
		loopback = ip.IsLoopback()
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && loopback) {
		return fmt.Errorf("%q must be https (http only on a loopback host)", o)
	}
	return nil
}

func (c *Console) createPortalLink(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	p, _ := access.FromContext(r.Context())
	var req portalLinkRequest
	if err := httpx.DecodeJSON(w, r, &req, 8<<10); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	if len(req.Sections) == 0 {
		httpx.ErrorWith(w, http.StatusBadRequest, "invalid_field", "sections: at least one of "+strings.Join(PortalSections, ", "), map[string]any{"field": "sections"})
		return
	}
	secs := []string{}
	for _, s := range req.Sections {
		if !slices.Contains(PortalSections, s) {
			httpx.ErrorWith(w, http.StatusBadRequest, "invalid_field", fmt.Sprintf("sections: unknown section %q (%s)", s, strings.Join(PortalSections, ", ")), map[string]any{"field": "sections"})
			return
		}
		if !slices.Contains(secs, s) {
			secs = append(secs, s)
		}
	}
	if len(req.FrameAncestors) > maxFrameAncestors {
		httpx.ErrorWith(w, http.StatusBadRequest, "invalid_field", fmt.Sprintf("frameAncestors: at most %d origins", maxFrameAncestors), map[string]any{"field": "frameAncestors"})
		return
	}
	fas := []string{}
	for _, o := range req.FrameAncestors {
		if err := checkOriginValue(o); err != nil {
			httpx.ErrorWith(w, http.StatusBadRequest, "invalid_field", "frameAncestors: "+err.Error(), map[string]any{"field": "frameAncestors"})
			return
		}
		fas = append(fas, strings.TrimSuffix(o, "/"))
	}
	ttl := defaultPortalLinkTTL
	if req.ExpiresInSeconds != 0 {
		ttl = time.Duration(req.ExpiresInSeconds) * time.Second
		if ttl < 30*time.Second || ttl > maxPortalLinkTTL {
			httpx.ErrorWith(w, http.StatusBadRequest, "invalid_field", "expiresInSeconds: from 30 to 3600", map[string]any{"field": "expiresInSeconds"})
			return
		}
	}
	tok := randomToken()
	now := c.cfg.Now().UTC()
	l, err := c.st.CreatePortalLink(r.Context(), store.PortalLink{TokenHash: hashToken(tok), OrgID: org.ID, Sections: secs,
		FrameAncestors: fas, CreatedBy: p.Actor(), ExpiresAt: now.Add(ttl), CreatedAt: now})
	if err != nil {
		c.log.Error("create portal link", "err", err)
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
		return
	}
	httpx.JSON(w, http.StatusCreated, portalLinkJSON{URL: strings.TrimSuffix(c.cfg.PublicURL, "/") + "/console/portal/" + tok,
		ExpiresAt: l.ExpiresAt.Truncate(time.Second), Sections: secs, FrameAncestors: fas})
}

func (c *Console) registerPortal(mux httpx.Mux) {
	mux.HandleFunc("GET /console/portal/{token}", c.openPortal)
	const base = "/console/portal/s/{sess}"
	route := func(pattern, section string, h orgHandler) {
		mux.HandleFunc(pattern, c.portalPage(section, h))
	}
	route("GET "+base+"/webhooks", "webhooks", c.webhooksPage)
	route("POST "+base+"/webhooks", "webhooks", c.webhookAdd)
	route("POST "+base+"/webhooks/{id}/delete", "webhooks", c.webhookDelete)
	route("POST "+base+"/webhooks/{id}/test", "webhooks", c.webhookTest)
	route("POST "+base+"/webhooks/{id}/rotate", "webhooks", c.webhookRotate)
	route("GET "+base+"/deliveries", "deliveries", c.deliveriesPage)
	route("GET "+base+"/deliveries/{id}", "deliveries", c.deliveryPage)
	route("POST "+base+"/deliveries/{id}/retry", "deliveries", c.deliveryRetry)
	route("POST "+base+"/deliveries/replay", "deliveries", c.deliveriesReplay)
}

// openPortal uses a link once and starts its portal session.
func (c *Console) openPortal(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	if len(tok) != 43 {
		c.errorPage(w, http.StatusNotFound, "This portal link is not valid.")
		return
	}
	l, err := c.st.UsePortalLink(r.Context(), hashToken(tok), c.cfg.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.errorPage(w, http.StatusNotFound, "This portal link is not valid.")
		return
	case errors.Is(err, store.ErrPrecondition):
		c.errorPage(w, http.StatusGone, "This portal link was used already or has expired. Ask for a new one.")
		return
	case err != nil:
		c.errorPage(w, http.StatusServiceUnavailable, "The console is unavailable; try again.")
		return
	}
	exp := c.cfg.Now().Add(portalSessionTTL).Unix()
	ids := fmt.Sprintf("%d.%d.%d", l.OrgID, l.ID, exp)
	sess := ids + "." + c.mac("portal", ids)
	http.Redirect(w, r, "/console/portal/s/"+sess+"/"+l.Sections[0], http.StatusSeeOther)
}

// portalPage checks the portal session in the path and that it opens
// section, then runs h as the link's org with the admin scope, limited
// by the routes to the link's sections.
func (c *Console) portalPage(section string, h orgHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := r.PathValue("sess")
		parts := strings.Split(sess, ".")
		deny := func() {
			c.errorPage(w, http.StatusForbidden, "This portal session has ended. Open a new portal link.")
		}
		if len(parts) != 4 || subtle.ConstantTimeCompare([]byte(parts[3]), []byte(c.mac("portal", strings.Join(parts[:3], ".")))) != 1 {
			deny()
			return
		}
		orgID, _ := strconv.ParseInt(parts[0], 10, 64)
		linkID, _ := strconv.ParseInt(parts[1], 10, 64)
		exp, _ := strconv.ParseInt(parts[2], 10, 64)
		if c.cfg.Now().Unix() >= exp {
			deny()
			return
		}
		l, err := c.st.GetPortalLink(r.Context(), orgID, linkID)
		if err != nil {
			deny()
			return
		}
		org, err := c.st.GetOrgByID(r.Context(), orgID)
		if err != nil {
			deny()
			return
		}
		p := &page{Section: section, Org: org.Name, Base: "/console/portal/s/" + sess, CSRF: c.mac("portal-csrf", sess),
			Flash: c.flash(r), Portal: &portalView{Sections: l.Sections}, FrameAncestors: l.FrameAncestors}
		if !slices.Contains(l.Sections, section) {
			p.Title = "Not available"
			p.Error = "This portal link does not open this section."
			c.render(w, http.StatusForbidden, "error", *p)
			return
		}
		if r.Method == http.MethodPost && !c.validCSRF(r, p.CSRF) {
			p.Title = "Not available"
			p.Error = "This form expired or came from another site. Reload the page and try again."
			c.render(w, http.StatusForbidden, "error", *p)
			return
		}
		s := &session{principal: access.Principal{ClientID: fmt.Sprintf("portal-link:%d", l.ID), OrgID: org.ID, OrgName: org.Name,
			Scopes: []string{access.ScopeAdmin}}, csrf: p.CSRF}
		h(w, r, s, p)
	}
}
