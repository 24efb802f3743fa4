package console

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/otphub/otphub/store"
)

type accountData struct {
	Field     map[string]string
	MinLength int
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, http.StatusOK, "account", page{Title: "Your account", User: &s.user, CSRF: s.csrf, Notice: s.notice, Flash: c.flash(r),
		Data: accountData{MinLength: MinPasswordLength}})
}

// changePassword sets a new password after checking the current one, and
// ends the user's other sessions (this one stays).
func (c *Console) changePassword(w http.ResponseWriter, r *http.Request, s *session) {
	d := accountData{Field: map[string]string{}, MinLength: MinPasswordLength}
	pw := r.PostFormValue("password")
	if !VerifyPassword(r.PostFormValue("current"), s.user.PasswordHash) {
		d.Field["current"] = "This is not your current password."
	} else if err := CheckPassword(pw, s.user.Email); err != nil {
		d.Field["password"] = strings.ToUpper(err.Error()[:1]) + err.Error()[1:] + "."
	} else if pw != r.PostFormValue("confirm") {
		d.Field["confirm"] = "The two passwords differ."
	}
	if len(d.Field) > 0 {
		c.render(w, http.StatusBadRequest, "account", page{Title: "Your account", User: &s.user, CSRF: s.csrf, Notice: s.notice,
			Error: "Correct the fields marked below.", Data: d})
		return
	}
	hash, err := HashPassword(pw)
	if err == nil {
		err = c.st.SetConsolePassword(r.Context(), s.user.ID, hash, hashToken(s.id))
	}
	if err != nil {
		c.log.Error("change password", "err", err)
		c.errorPage(w, http.StatusServiceUnavailable, "The console is unavailable; try again.")
		return
	}
	c.audit.Append(r.Context(), store.AuditEntry{Org: s.orgName, Actor: s.principal.Actor(), Action: "console.password_changed",
		Target: s.user.Email, Status: http.StatusSeeOther, IP: c.audit.ClientIP(r)})
	c.done(w, r, "/console/account", "Password changed. Your other sessions were signed out.")
}

// userDelete removes a console user (never the platform admin doing it).
func (c *Console) userDelete(w http.ResponseWriter, r *http.Request, s *session, p *page) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil && id == s.user.ID {
		err = errors.New("self")
	}
	var u store.ConsoleUser
	if err == nil {
		u, err = c.st.GetConsoleUser(r.Context(), id)
	}
	if err == nil && p.Org != "" && u.OrgID != p.orgID {
		err = errors.New("another org's user")
	}
	if err == nil {
		err = c.st.DeleteConsoleUser(r.Context(), id)
	}
	if err != nil {
		p.Title = usersTitle(p)
		p.Error = "This user cannot be removed (you cannot remove yourself)."
		p.Data = c.usersData(r, p)
		c.render(w, http.StatusBadRequest, "users", *p)
		return
	}
	c.audit.Append(r.Context(), store.AuditEntry{Org: c.orgOf(r.Context(), u), Actor: s.principal.Actor(), Action: "console.user_removed",
		Target: u.Email, Status: http.StatusSeeOther, IP: c.audit.ClientIP(r)})
	back := "/console/platform/users"
	if p.Org != "" {
		back = p.path("/team")
	}
	c.done(w, r, back, u.Email+" was removed and signed out.")
}
