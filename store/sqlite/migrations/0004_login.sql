-- The hosted login step (docs/login.md): applications (relying parties of
-- the OIDC authorization code flow), login flows with their single-use
-- authorization codes, and the WebOTP setting of an org's SMS OTP.

ALTER TABLE otp_settings ADD COLUMN web_otp BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE applications (
    id            TEXT    PRIMARY KEY,
    org_id        BIGINT  NOT NULL,
    name          TEXT    NOT NULL,
    client_id     TEXT    NOT NULL UNIQUE,
    client_secret BLOB    NOT NULL,
    redirect_uris TEXT    NOT NULL,
    first_factors TEXT    NOT NULL,
    backup_codes  BOOLEAN NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
CREATE INDEX applications_org ON applications (org_id, created_at);

CREATE TABLE login_flows (
    id              TEXT    PRIMARY KEY,
    org_id          BIGINT  NOT NULL,
    application_id  TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,
    browser_hash    BLOB    NOT NULL,
    redirect_uri    TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    nonce           TEXT    NOT NULL,
    code_challenge  TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    mobile          TEXT    NOT NULL,
    amr             TEXT    NOT NULL,
    locale          TEXT    NOT NULL,
    challenge_id    TEXT    NOT NULL,
    expires_at      BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    completed_at    BIGINT  NOT NULL,
    method          TEXT    NOT NULL,
    code_hash       BLOB,
    code_expires_at BIGINT  NOT NULL,
    code_used_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX login_flows_code ON login_flows (code_hash);
CREATE INDEX login_flows_expiry ON login_flows (expires_at);
