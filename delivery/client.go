package delivery

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// NoRedirect is the CheckRedirect of every sender's client: a 3xx is an
// answer (ReasonRedirect), never followed, so a message or a credential is
// never sent to another address than the one configured.
func NoRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// SenderClient is the client a sender uses when given none (tests): no
// redirects, a 10 s total timeout. In the service every sender gets the
// SSRF-guarded egress client instead.
func SenderClient() *http.Client {
	return &http.Client{CheckRedirect: NoRedirect, Timeout: 10 * time.Second}
}

// ProviderBase resolves a provider's base URL setting: raw without
// trailing slashes, or def when raw is empty, and its scheme://host
// origin. ok is false unless it is an absolute http(s) URL.
func ProviderBase(raw, def string) (base, origin string, ok bool) {
	base = strings.TrimRight(raw, "/")
	if base == "" {
		base = def
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", "", false
	}
	return base, u.Scheme + "://" + u.Host, true
}
