-- OTP statistics (GET /api/v1/orgs/{org}/sms-otp/stats, the console's
-- overview): the country calling code of a challenge's number, filled on
-- insert (0 when unknown, and for rows from before), and an index that
-- reads one org's challenges of a time window.
ALTER TABLE challenges ADD COLUMN country_code INTEGER NOT NULL DEFAULT 0;
CREATE INDEX challenges_org_created ON challenges (org_id, created_at);
