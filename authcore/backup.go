package authcore

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
)

func hmacEqual(a, b []byte) bool { return hmac.Equal(a, b) }

func backupCodesDisabled(w http.ResponseWriter) {
	httpx.Error(w, http.StatusForbidden, "backup_codes_disabled", "backup codes are disabled in this organization's SMS OTP settings")
}

// generateBackupCodes replaces the user's backup codes with ten new ones,
// shown once.
func (s *Service) generateBackupCodes(w http.ResponseWriter, r *http.Request) {
	org := orgOf(r)
	userID := r.PathValue("userId")
	if !validText(userID, maxUserIDChars) {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", fmt.Sprintf("userId: 1 to %d characters, no control characters", maxUserIDChars))
		return
	}
	settings, err := s.settings(r.Context(), org.ID)
	if err != nil {
		s.internal(w, "get settings", err)
		return
	}
	if !settings.BackupCodesEnabled {
		backupCodesDisabled(w)
		return
	}
	codes := make([]string, 0, BackupCodeCount)
	hashes := make([][]byte, 0, BackupCodeCount)
	for range BackupCodeCount {
		c, err := newBackupCode()
		if err != nil {
			s.internal(w, "generate backup code", err)
			return
		}
		h, err := s.newBackupHash(org.ID, userID, c)
		if err != nil {
			s.internal(w, "hash backup code", err)
			return
		}
		codes, hashes = append(codes, c), append(hashes, h)
	}
	if err := s.st.ReplaceBackupCodes(r.Context(), org.ID, userID, hashes); err != nil {
		s.internal(w, "store backup codes", err)
		return
	}
	s.log.Info("backup codes generated", "org", org.Name)
	httpx.JSON(w, http.StatusCreated, map[string]any{"codes": codes})
}

// verifyBackupCode completes challenge c with one of its user's backup
// codes, the user's attempt-th attempt (reserved by the caller). The code
// is used (single use, of concurrent uses one wins) before the challenge is
// consumed.
func (s *Service) verifyBackupCode(w http.ResponseWriter, r *http.Request, org store.Org, c store.Challenge, code string, settings store.OTPSettings, attempt int, now time.Time) {
	ctx := r.Context()
	list, err := s.st.ListBackupCodes(ctx, org.ID, c.UserID)
	if err != nil {
		s.internal(w, "list backup codes", err)
		return
	}
	var match *store.BackupCode
	for i := range list {
		// Every code is compared (no early exit) so timing says nothing
		// about which one matched.
		if s.backupCodeMatches(org.ID, c.UserID, code, list[i].Hash) && list[i].UsedAt.IsZero() && match == nil {
			match = &list[i]
		}
	}
	if match == nil {
		s.invalidCode(w, settings, attempt)
		return
	}
	switch err := s.st.UseBackupCode(ctx, org.ID, c.UserID, match.ID, now.UTC()); {
	case errors.Is(err, store.ErrPrecondition):
		s.invalidCode(w, settings, attempt)
		return
	case err != nil:
		s.internal(w, "use backup code", err)
		return
	}
	// Consume the challenge with whatever code it holds now (a resend may
	// have replaced it meanwhile).
	for range 3 {
		err = s.st.ConsumeChallenge(ctx, org.ID, c.ID, c.CodeHMAC, now.UTC())
		if !errors.Is(err, store.ErrPrecondition) {
			break
		}
		cur, gerr := s.st.GetChallenge(ctx, org.ID, c.ID)
		if gerr != nil {
			err = gerr
			break
		}
		if !cur.ConsumedAt.IsZero() {
			// The backup code was right (and is used): reset as a success.
			s.resetFailedAttempts(ctx, org, c)
			alreadyVerified(w)
			return
		}
		c = cur
	}
	if err != nil {
		s.internal(w, "consume challenge", err)
		return
	}
	s.succeed(w, r, org, c, "backup_code")
}
