-- Tenant isolation (issue 18).
--
-- subscriptions.previous_secret is the hub.secret a re-subscription
-- replaced, sealed like secret; deliveries are signed under it as well as
-- under the new one until previous_secret_until (unix microseconds; 0: no
-- overlap).
--
-- otp_settings gains the org's number-type policy (allowed_number_types,
-- JSON list of libphonenumber types; '[]' is the built-in default: mobile
-- and fixed-line-or-mobile) and its own send budgets (0: the server-wide
-- ceiling), each within the server-wide ceiling of the same window.

ALTER TABLE subscriptions ADD COLUMN previous_secret BLOB NOT NULL DEFAULT X'';
ALTER TABLE subscriptions ADD COLUMN previous_secret_until BIGINT NOT NULL DEFAULT 0;

ALTER TABLE otp_settings ADD COLUMN allowed_number_types TEXT NOT NULL DEFAULT '[]';
ALTER TABLE otp_settings ADD COLUMN send_limit_per_number INTEGER NOT NULL DEFAULT 0;
ALTER TABLE otp_settings ADD COLUMN send_limit_per_ip INTEGER NOT NULL DEFAULT 0;
ALTER TABLE otp_settings ADD COLUMN send_limit_per_org INTEGER NOT NULL DEFAULT 0;
