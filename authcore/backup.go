package authcore

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
)

func hmacEqual(a, b []byte) bool { return hmac.Equal(a, b) }

var errBackupCodesDisabled = refuse(http.StatusForbidden, "backup_codes_disabled", "backup codes are disabled in this organization's SMS OTP settings")

func checkUserID(userID string) error {
	if !validText(userID, maxUserIDChars) {
		return invalidField(fmt.Sprintf("userId: 1 to %d characters, no control characters", maxUserIDChars))
	}
	return nil
}

// generateBackupCodes replaces the user's backup codes with ten new ones,
// shown once.
func (s *Service) generateBackupCodes(w http.ResponseWriter, r *http.Request) {
	org := orgOf(r)
	userID := r.PathValue("userId")
	if err := checkUserID(userID); err != nil {
		s.writeError(w, "generate backup codes", err)
		return
	}
	settings, err := s.Settings(r.Context(), org.ID)
	if err != nil {
		s.internal(w, "get settings", err)
		return
	}
	if !settings.BackupCodesEnabled {
		s.writeError(w, "generate backup codes", errBackupCodesDisabled)
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

// BackupCodesRemaining returns how many unused backup codes the user has.
func (s *Service) BackupCodesRemaining(ctx context.Context, org store.Org, userID string) (int, error) {
	if err := checkUserID(userID); err != nil {
		return 0, err
	}
	list, err := s.st.ListBackupCodes(ctx, org.ID, userID)
	if err != nil {
		return 0, wrapf(err, "list backup codes")
	}
	n := 0
	for _, c := range list {
		if c.UsedAt.IsZero() {
			n++
		}
	}
	return n, nil
}

// countBackupCodes answers how many of the user's backup codes are left.
func (s *Service) countBackupCodes(w http.ResponseWriter, r *http.Request) {
	n, err := s.BackupCodesRemaining(r.Context(), orgOf(r), r.PathValue("userId"))
	if err != nil {
		s.writeError(w, "count backup codes", err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]int{"remaining": n})
}

// revokeBackupCodes deletes every backup code of the user (a lost list).
func (s *Service) revokeBackupCodes(w http.ResponseWriter, r *http.Request) {
	org := orgOf(r)
	userID := r.PathValue("userId")
	if err := checkUserID(userID); err != nil {
		s.writeError(w, "revoke backup codes", err)
		return
	}
	if err := s.st.ReplaceBackupCodes(r.Context(), org.ID, userID, nil); err != nil {
		s.internal(w, "revoke backup codes", err)
		return
	}
	s.log.Info("backup codes revoked", "org", org.Name)
	w.WriteHeader(http.StatusNoContent)
}

// verifyUserBackupCode verifies one of the user's backup codes without a
// challenge: no SMS is sent first, so a user whose number is out of its
// send budget (or unreachable) can still get in.
func (s *Service) verifyUserBackupCode(w http.ResponseWriter, r *http.Request) {
	var req struct {
		BackupCode string `json:"backupCode"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 1<<10); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	remaining, err := s.VerifyBackupCode(r.Context(), orgOf(r), r.PathValue("userId"), req.BackupCode)
	if err != nil {
		s.writeError(w, "verify backup code", err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"verified": true, "remaining": remaining})
}

// VerifyBackupCode uses one of the user's backup codes (single use) and
// returns how many are left. It needs no challenge; the user's lockout
// applies and every attempt counts against it, as for an SMS code.
func (s *Service) VerifyBackupCode(ctx context.Context, org store.Org, userID, code string) (int, error) {
	if err := checkUserID(userID); err != nil {
		return 0, err
	}
	if err := checkCode("backupCode", code); err != nil {
		return 0, err
	}
	settings, err := s.Settings(ctx, org.ID)
	if err != nil {
		return 0, wrapf(err, "get settings")
	}
	now := s.cfg.Now()
	if err := s.checkLockout(ctx, org.ID, userID, settings.MaxFailedAttempts, now, true); err != nil {
		return 0, err
	}
	remaining, err := s.useBackupCode(ctx, org, userID, code, settings, now)
	if err != nil {
		return 0, err
	}
	s.succeed(ctx, org, userID, "backup_code")
	return remaining, nil
}

// useBackupCode reserves an attempt, then marks the user's matching unused
// code used (of concurrent uses one wins) and returns how many are left.
func (s *Service) useBackupCode(ctx context.Context, org store.Org, userID, code string, settings store.OTPSettings, now time.Time) (int, error) {
	if !settings.BackupCodesEnabled {
		return 0, errBackupCodesDisabled
	}
	attempt, err := s.reserveAttempt(ctx, org, userID, settings, now)
	if err != nil {
		return 0, err
	}
	list, err := s.st.ListBackupCodes(ctx, org.ID, userID)
	if err != nil {
		return 0, wrapf(err, "list backup codes")
	}
	var match *store.BackupCode
	unused := 0
	for i := range list {
		// Every code is compared (no early exit) so timing says nothing
		// about which one matched.
		ok := s.backupCodeMatches(org.ID, userID, code, list[i].Hash)
		if list[i].UsedAt.IsZero() {
			unused++
			if ok && match == nil {
				match = &list[i]
			}
		}
	}
	if match == nil {
		return 0, s.invalidCode(settings, attempt)
	}
	switch err := s.st.UseBackupCode(ctx, org.ID, userID, match.ID, now.UTC()); {
	case errors.Is(err, store.ErrPrecondition):
		return 0, s.invalidCode(settings, attempt)
	case err != nil:
		return 0, wrapf(err, "use backup code")
	}
	return unused - 1, nil
}

// VerifyWithBackupCode completes the org's challenge id with one of its
// user's backup codes. The code is used before the challenge is consumed.
func (s *Service) VerifyWithBackupCode(ctx context.Context, org store.Org, id, code string) error {
	if err := checkCode("backupCode", code); err != nil {
		return err
	}
	release, err := s.admit(ctx, org, "verify")
	if err != nil {
		return err
	}
	defer release()
	c, settings, now, err := s.openChallenge(ctx, org, id)
	if err != nil {
		return err
	}
	if _, err := s.useBackupCode(ctx, org, c.UserID, code, settings, now); err != nil {
		return err
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
			s.resetFailedAttempts(ctx, org, c.UserID)
			return errAlreadyVerified
		}
		c = cur
	}
	if err != nil {
		return wrapf(err, "consume challenge")
	}
	s.succeed(ctx, org, c.UserID, "backup_code")
	return nil
}
