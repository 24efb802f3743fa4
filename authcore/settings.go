package authcore

import (
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/templates"
)

// settingsJSON is the wire form of store.OTPSettings.
type settingsJSON struct {
	ExpirySeconds         int   `json:"expirySeconds"`
	NumericOnly           bool  `json:"numericOnly"`
	Length                int   `json:"length"`
	MaxResends            int   `json:"maxResends"`
	ResendIntervalSeconds int   `json:"resendIntervalSeconds"`
	MaxFailedAttempts     int   `json:"maxFailedAttempts"`
	BackupCodesEnabled    bool  `json:"backupCodesEnabled"`
	WebOTP                bool  `json:"webOtp"`
	AllowedCountryCodes   []int `json:"allowedCountryCodes"`
}

// settingsPatch is a PUT body: omitted fields keep their current value.
type settingsPatch struct {
	ExpirySeconds         *int   `json:"expirySeconds"`
	NumericOnly           *bool  `json:"numericOnly"`
	Length                *int   `json:"length"`
	MaxResends            *int   `json:"maxResends"`
	ResendIntervalSeconds *int   `json:"resendIntervalSeconds"`
	MaxFailedAttempts     *int   `json:"maxFailedAttempts"`
	BackupCodesEnabled    *bool  `json:"backupCodesEnabled"`
	WebOTP                *bool  `json:"webOtp"`
	AllowedCountryCodes   *[]int `json:"allowedCountryCodes"`
}

func settingsOut(s store.OTPSettings) settingsJSON {
	cc := s.AllowedCountryCodes
	if cc == nil {
		cc = []int{}
	}
	return settingsJSON{s.ExpirySeconds, s.NumericOnly, s.Length, s.MaxResends, s.ResendIntervalSeconds, s.MaxFailedAttempts, s.BackupCodesEnabled, s.WebOTP, cc}
}

func (s *Service) getSettings(w http.ResponseWriter, r *http.Request) {
	st, err := s.Settings(r.Context(), orgOf(r).ID)
	if err != nil {
		s.internal(w, "get settings", err)
		return
	}
	httpx.JSON(w, http.StatusOK, settingsOut(st))
}

func (s *Service) putSettings(w http.ResponseWriter, r *http.Request) {
	org := orgOf(r)
	var p settingsPatch
	if err := httpx.DecodeJSON(w, r, &p, 16<<10); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	st, err := s.Settings(r.Context(), org.ID)
	if err != nil {
		s.internal(w, "get settings", err)
		return
	}
	setIf(&st.ExpirySeconds, p.ExpirySeconds)
	setIf(&st.NumericOnly, p.NumericOnly)
	setIf(&st.Length, p.Length)
	setIf(&st.MaxResends, p.MaxResends)
	setIf(&st.ResendIntervalSeconds, p.ResendIntervalSeconds)
	setIf(&st.MaxFailedAttempts, p.MaxFailedAttempts)
	setIf(&st.BackupCodesEnabled, p.BackupCodesEnabled)
	setIf(&st.WebOTP, p.WebOTP)
	if p.AllowedCountryCodes != nil {
		cc := slices.Clone(*p.AllowedCountryCodes)
		slices.Sort(cc)
		st.AllowedCountryCodes = slices.Compact(cc)
	}
	if field, msg := validateSettings(st, s.cfg.MaxExpiry); field != "" {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", field+": "+msg)
		return
	}
	st.OrgID = org.ID
	st.UpdatedAt = s.cfg.Now().UTC()
	if err := s.st.PutOTPSettings(r.Context(), st); err != nil {
		s.internal(w, "put settings", err)
		return
	}
	s.log.Info("sms otp settings updated", "org", org.Name)
	httpx.JSON(w, http.StatusOK, settingsOut(st))
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

var localePattern = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}$`)

// DefaultLocale is the {locale} path value naming an org's default
// template, used for every locale without its own override.
const DefaultLocale = "default"

// canonicalLocale returns the BCP 47 tag in its canonical case (language
// lower, script title, region upper), or ok=false.
func canonicalLocale(s string) (string, bool) {
	if !localePattern.MatchString(s) {
		return "", false
	}
	parts := strings.Split(s, "-")
	parts[0] = strings.ToLower(parts[0])
	for i := 1; i < len(parts); i++ {
		switch p := parts[i]; {
		case len(p) == 2:
			parts[i] = strings.ToUpper(p)
		case len(p) == 4 && !strings.ContainsAny(p, "0123456789"):
			parts[i] = strings.ToUpper(p[:1]) + strings.ToLower(p[1:])
		default:
			parts[i] = strings.ToLower(p)
		}
	}
	return strings.Join(parts, "-"), true
}

// pathLocale reads the {locale} path value; "default" is the org default ("").
func pathLocale(w http.ResponseWriter, r *http.Request) (string, bool) {
	v := r.PathValue("locale")
	if v == DefaultLocale {
		return "", true
	}
	l, ok := canonicalLocale(v)
	if !ok {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", "locale: not a BCP 47 language tag (e.g. en, fr-CA) or \"default\"")
	}
	return l, ok
}

type templateJSON struct {
	Locale    string    `json:"locale"`
	Body      string    `json:"body"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func templateOut(t store.MessageTemplate) templateJSON {
	l := t.Locale
	if l == "" {
		l = DefaultLocale
	}
	return templateJSON{l, t.Body, t.UpdatedAt.UTC()}
}

func (s *Service) listTemplates(w http.ResponseWriter, r *http.Request) {
	ts, err := s.st.ListMessageTemplates(r.Context(), orgOf(r).ID)
	if err != nil {
		s.internal(w, "list templates", err)
		return
	}
	out := make([]templateJSON, 0, len(ts))
	for _, t := range ts {
		out = append(out, templateOut(t))
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"templates": out})
}

func (s *Service) getTemplate(w http.ResponseWriter, r *http.Request) {
	locale, ok := pathLocale(w, r)
	if !ok {
		return
	}
	t, err := s.st.GetMessageTemplate(r.Context(), orgOf(r).ID, locale)
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "template_not_found", "no template override for this locale")
		return
	}
	if err != nil {
		s.internal(w, "get template", err)
		return
	}
	httpx.JSON(w, http.StatusOK, templateOut(t))
}

// maxTemplateBytes caps a template override.
const maxTemplateBytes = 4 << 10

func (s *Service) putTemplate(w http.ResponseWriter, r *http.Request) {
	org := orgOf(r)
	locale, ok := pathLocale(w, r)
	if !ok {
		return
	}
	var req struct {
		Body *string `json:"body"`
	}
	if err := httpx.DecodeJSON(w, r, &req, maxTemplateBytes+1<<10); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	switch {
	case req.Body == nil || *req.Body == "":
		httpx.Error(w, http.StatusBadRequest, "invalid_field", "body: required")
		return
	case len(*req.Body) > maxTemplateBytes || !utf8.ValidString(*req.Body):
		httpx.Error(w, http.StatusBadRequest, "invalid_field", "body: at most 4096 bytes of valid UTF-8")
		return
	}
	if err := templates.Validate(*req.Body); err != nil {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", "body: "+err.Error())
		return
	}
	t := store.MessageTemplate{OrgID: org.ID, Locale: locale, Body: *req.Body, UpdatedAt: s.cfg.Now().UTC()}
	if err := s.st.PutMessageTemplate(r.Context(), t); err != nil {
		s.internal(w, "put template", err)
		return
	}
	httpx.JSON(w, http.StatusOK, templateOut(t))
}

func (s *Service) deleteTemplate(w http.ResponseWriter, r *http.Request) {
	locale, ok := pathLocale(w, r)
	if !ok {
		return
	}
	err := s.st.DeleteMessageTemplate(r.Context(), orgOf(r).ID, locale)
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "template_not_found", "no template override for this locale")
		return
	}
	if err != nil {
		s.internal(w, "delete template", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
