package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ---- Applications (the relying parties of the hosted login step) ----

// firstFactors are the first factors an application may accept, by the
// amr value the applications API takes, with the console's words for them.
var firstFactors = []struct{ Value, Label string }{
	{"pwd", "Username & password"},
	{"magic_link", "Magic link"},
	{"fed", "Federated (an identity provider)"},
}

type application struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	ClientID     string    `json:"clientId"`
	ClientSecret string    `json:"clientSecret"` // on creation and rotation only
	RedirectURIs []string  `json:"redirectUris"`
	LoginFlow    loginFlow `json:"loginFlow"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

type loginFlow struct {
	FirstFactors []string `json:"firstFactors"`
	SecondFactor string   `json:"secondFactor"`
	BackupCodes  bool     `json:"backupCodes"`
}

// appForm is the application form as typed.
type appForm struct {
	Name, RedirectURIs string
	FirstFactors       []string
	SMSOTP             bool
	BackupCodes        bool
}

type applicationsData struct {
	Applications []application
	App          *application // the one being edited
	Tab          string       // general or login-flow, when editing
	Form         appForm
	Created      *application // shown once: with its secret
	FirstFactors []struct{ Value, Label string }
	// OrgBackupCodes is the org's backupCodesEnabled, which must be on too.
	OrgBackupCodes bool
	SettingsPath   string // the org's SMS OTP settings page
	Field          map[string]string
}

func (c *Console) applicationsData(r *http.Request, s *session, p *page) applicationsData {
	d := applicationsData{FirstFactors: firstFactors, Field: map[string]string{}, SettingsPath: p.path("/sms-otp"),
		Form: appForm{FirstFactors: []string{"pwd"}, SMSOTP: true}}
	var st otpSettings
	if c.getJSON(r, s, &page{}, apiPath(p.Org, "/sms-otp/settings"), &st) {
		d.OrgBackupCodes = st.BackupCodesEnabled
	}
	return d
}

func (c *Console) listApplications(r *http.Request, s *session, p *page, d *applicationsData) {
	var out struct {
		Applications []application `json:"applications"`
	}
	if c.getJSON(r, s, p, apiPath(p.Org, "/applications"), &out) {
		d.Applications = out.Applications
	}
}

func (c *Console) applicationsPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Applications"
	d := c.applicationsData(r, s, p)
	c.listApplications(r, s, p, &d)
	p.Data = d
	c.render(w, http.StatusOK, "applications", *p)
}

// readAppForm reads the form fields present in r into f (a form posts
// only its tab's fields: the others keep f's values).
func readAppForm(r *http.Request, f *appForm) {
	if _, ok := r.PostForm["name"]; ok {
		f.Name = strings.TrimSpace(r.PostFormValue("name"))
	}
	if _, ok := r.PostForm["redirectUris"]; ok {
		f.RedirectURIs = r.PostFormValue("redirectUris")
	}
	if r.PostFormValue("loginFlow") == "1" {
		f.FirstFactors = append([]string{}, r.PostForm["firstFactors"]...)
		f.SMSOTP = r.PostFormValue("smsOtp") == "on"
		f.BackupCodes = r.PostFormValue("backupCodes") == "on"
	}
}

// appBody is the API's create or replace body for f, or the field errors
// the console finds before asking the API.
func appBody(f appForm) (map[string]any, map[string]string) {
	errs := map[string]string{}
	uris := []string{}
	for _, line := range strings.Split(f.RedirectURIs, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			uris = append(uris, line)
		}
	}
	if !f.SMSOTP {
		errs["smsOtp"] = "SMS OTP is the second factor of every otphub application (it is what the application asks otphub for); keep it on."
	}
	return map[string]any{
		"name": f.Name, "redirectUris": uris,
		"loginFlow": map[string]any{"firstFactors": f.FirstFactors, "secondFactor": "sms-otp", "backupCodes": f.BackupCodes},
	}, errs
}

// appFieldErrors maps the applications API's error ("field: message")
// onto the form's fields; a redirect URI's error names its line.
func appFieldErrors(body []byte) (string, map[string]string) {
	e, _ := fieldErrors(body)
	field, msg, ok := strings.Cut(e.Message, ": ")
	if !ok {
		return e.Message, nil
	}
	switch {
	case field == "name":
		return "", map[string]string{"name": msg}
	case field == "redirectUris":
		return "", map[string]string{"redirectUris": "Enter " + msg + ", one per line."}
	case strings.HasPrefix(field, "redirectUris["):
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(field, "redirectUris["), "]"))
		return "", map[string]string{"redirectUris": fmt.Sprintf("Line %d: %s.", n+1, msg)}
	case field == "loginFlow.firstFactors":
		return "", map[string]string{"firstFactors": "Choose at least one first factor: SMS OTP is only a second factor, after a step that identified the user."}
	case field == "loginFlow.secondFactor":
		return "", map[string]string{"smsOtp": msg}
	}
	return e.Message, nil
}

func (c *Console) applicationCreate(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	p.Title = "Applications"
	d := c.applicationsData(r, s, p)
	readAppForm(r, &d.Form)
	body, errs := appBody(d.Form)
	status := http.StatusBadRequest
	if len(errs) == 0 {
		var resp []byte
		status, resp = c.call(r, s, "POST", apiPath(p.Org, "/applications"), body)
		if status == http.StatusCreated {
			// The secret is on this answer only; reloading does not show it.
			_ = json.Unmarshal(resp, &d.Created)
			d.Form = appForm{FirstFactors: []string{"pwd"}, SMSOTP: true}
			c.listApplications(r, s, p, &d)
			p.Flash = "Application created. Copy its client secret now: it is not shown again."
			p.Data = d
			c.render(w, http.StatusCreated, "applications", *p)
			return
		}
		p.Error, errs = appFieldErrors(resp)
	}
	if errs != nil {
		d.Field = errs
		p.Error = "Correct the fields marked below."
	}
	c.listApplications(r, s, p, &d)
	p.Data = d
	c.render(w, max(status, http.StatusBadRequest), "applications", *p)
}

// loadApplication reads the {id} application into d (and the form); false
// when it rendered the error.
func (c *Console) loadApplication(w http.ResponseWriter, r *http.Request, s *session, p *page, d *applicationsData) bool {
	var app application
	if !c.getJSON(r, s, p, apiPath(p.Org, "/applications/"+url.PathEscape(r.PathValue("id"))), &app) {
		c.render(w, http.StatusNotFound, "error", *p)
		return false
	}
	d.App = &app
	d.Form = appForm{Name: app.Name, RedirectURIs: strings.Join(app.RedirectURIs, "\n"),
		FirstFactors: app.LoginFlow.FirstFactors, SMSOTP: app.LoginFlow.SecondFactor == "sms-otp", BackupCodes: app.LoginFlow.BackupCodes}
	p.Title = "Application " + app.Name
	return true
}

func appTab(v string) string {
	if v == "login-flow" {
		return v
	}
	return "general"
}

func (c *Console) applicationPage(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	d := c.applicationsData(r, s, p)
	d.Tab = appTab(r.URL.Query().Get("tab"))
	if !c.loadApplication(w, r, s, p, &d) {
		return
	}
	p.Data = d
	c.render(w, http.StatusOK, "applications", *p)
}

// applicationSave replaces the application through PUT: the posted tab's
// fields over the saved ones.
func (c *Console) applicationSave(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	d := c.applicationsData(r, s, p)
	d.Tab = appTab(r.PostFormValue("tab"))
	if !c.loadApplication(w, r, s, p, &d) {
		return
	}
	readAppForm(r, &d.Form)
	body, errs := appBody(d.Form)
	status := http.StatusBadRequest
	if len(errs) == 0 {
		var resp []byte
		status, resp = c.call(r, s, "PUT", apiPath(p.Org, "/applications/"+url.PathEscape(d.App.ID)), body)
		if status == http.StatusOK {
			msg := "Application saved."
			if d.Tab == "login-flow" {
				msg = "Login flow saved."
			}
			c.done(w, r, p.path("/applications/"+url.PathEscape(d.App.ID)+"?tab="+d.Tab), msg)
			return
		}
		p.Error, errs = appFieldErrors(resp)
	}
	if errs != nil {
		d.Field = errs
		p.Error = "Correct the fields marked below."
	}
	p.Data = d
	c.render(w, max(status, http.StatusBadRequest), "applications", *p)
}

// applicationSecret rotates the client secret and shows the new one once.
func (c *Console) applicationSecret(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	d := c.applicationsData(r, s, p)
	d.Tab = "general"
	if !c.loadApplication(w, r, s, p, &d) {
		return
	}
	status, resp := c.call(r, s, "POST", apiPath(p.Org, "/applications/"+url.PathEscape(d.App.ID)+"/secret"), nil)
	if status != http.StatusOK {
		e, _ := fieldErrors(resp)
		p.Error = e.Message
		p.Data = d
		c.render(w, status, "applications", *p)
		return
	}
	_ = json.Unmarshal(resp, &d.Created)
	p.Flash = "New client secret made: the old one no longer works. Copy it now: it is not shown again."
	p.Data = d
	c.render(w, http.StatusOK, "applications", *p)
}

func (c *Console) applicationDelete(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	status, body := c.call(r, s, "DELETE", apiPath(p.Org, "/applications/"+url.PathEscape(r.PathValue("id"))), nil)
	if status != http.StatusNoContent {
		e, _ := fieldErrors(body)
		p.Title = "Applications"
		p.Error = e.Message
		d := c.applicationsData(r, s, p)
		c.listApplications(r, s, p, &d)
		p.Data = d
		c.render(w, status, "applications", *p)
		return
	}
	c.done(w, r, p.path("/applications"), "Application deleted: its sign-ins stop working.")
}

// factorLabel is the console's name of a first factor.
func factorLabel(v string) string {
	i := slices.IndexFunc(firstFactors, func(f struct{ Value, Label string }) bool { return f.Value == v })
	if i < 0 {
		return v
	}
	return firstFactors[i].Label
}
