-- otphub schema v1 (SQLite). Timestamps are unix microseconds (0 = unset);
-- secrets (sms_providers.config, subscriptions.secret,
-- signing_keys.private_key, delivery_tasks.event) are AES-256-GCM sealed.

CREATE TABLE orgs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL
);

CREATE TABLE clients (
    client_id      TEXT    PRIMARY KEY,
    org_id         BIGINT  NOT NULL,
    name           TEXT    NOT NULL,
    secret_hash    BLOB    NOT NULL,
    scopes         TEXT    NOT NULL,
    platform_admin BOOLEAN NOT NULL,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX clients_org ON clients (org_id);

CREATE TABLE otp_settings (
    org_id                  BIGINT  PRIMARY KEY,
    expiry_seconds          INTEGER NOT NULL,
    numeric_only            BOOLEAN NOT NULL,
    length                  INTEGER NOT NULL,
    max_resends             INTEGER NOT NULL,
    resend_interval_seconds INTEGER NOT NULL,
    max_failed_attempts     INTEGER NOT NULL,
    backup_codes_enabled    BOOLEAN NOT NULL,
    allowed_country_codes   TEXT    NOT NULL,
    updated_at              BIGINT  NOT NULL
);

CREATE TABLE message_templates (
    org_id     BIGINT NOT NULL,
    locale     TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, locale)
);

CREATE TABLE sms_providers (
    org_id     BIGINT NOT NULL,
    slot       TEXT   NOT NULL,
    type       TEXT   NOT NULL,
    config     BLOB   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, slot)
);

CREATE TABLE subscriptions (
    id            TEXT    PRIMARY KEY,
    org_id        BIGINT  NOT NULL,
    topic         TEXT    NOT NULL,
    callback      TEXT    NOT NULL,
    secret        BLOB    NOT NULL,
    state         TEXT    NOT NULL,
    lease_seconds INTEGER NOT NULL,
    expires_at    BIGINT  NOT NULL,
    format        TEXT    NOT NULL,
    signature_alg TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    UNIQUE (org_id, topic, callback)
);
CREATE INDEX subscriptions_expiry ON subscriptions (expires_at) WHERE expires_at <> 0;

CREATE TABLE challenges (
    id           TEXT    PRIMARY KEY,
    org_id       BIGINT  NOT NULL,
    user_id      TEXT    NOT NULL,
    mobile       TEXT    NOT NULL,
    application  TEXT    NOT NULL,
    code_hmac    BLOB    NOT NULL,
    expires_at   BIGINT  NOT NULL,
    resends      INTEGER NOT NULL,
    last_sent_at BIGINT  NOT NULL,
    consumed_at  BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX challenges_expiry ON challenges (expires_at);

CREATE TABLE failed_attempts (
    org_id          BIGINT  NOT NULL,
    user_id         TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    last_failure_at BIGINT  NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE backup_codes (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id  BIGINT  NOT NULL,
    user_id TEXT    NOT NULL,
    hash    BLOB    NOT NULL,
    used_at BIGINT  NOT NULL
);
CREATE INDEX backup_codes_user ON backup_codes (org_id, user_id);

CREATE TABLE rate_counters (
    counter_key  TEXT   NOT NULL,
    window_start BIGINT NOT NULL,
    hits         BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (counter_key, window_start)
);
CREATE INDEX rate_counters_expiry ON rate_counters (expires_at);

CREATE TABLE signing_keys (
    kid         TEXT   PRIMARY KEY,
    algorithm   TEXT   NOT NULL,
    private_key BLOB   NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT NOT NULL
);

CREATE TABLE delivery_tasks (
    id               TEXT    PRIMARY KEY,
    org_id           BIGINT  NOT NULL,
    event_id         TEXT    NOT NULL,
    destination_type TEXT    NOT NULL,
    destination_id   TEXT    NOT NULL,
    event            BLOB    NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    lease_owner      TEXT    NOT NULL,
    lease_until      BIGINT  NOT NULL,
    last_error       TEXT    NOT NULL,
    last_status_code INTEGER NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    UNIQUE (event_id, destination_type, destination_id)
);
CREATE INDEX delivery_tasks_due ON delivery_tasks (next_attempt_at) WHERE status = 'pending';
CREATE INDEX delivery_tasks_org ON delivery_tasks (org_id, created_at, id);
CREATE INDEX delivery_tasks_finished ON delivery_tasks (updated_at) WHERE status <> 'pending';

CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT    NOT NULL REFERENCES delivery_tasks (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    started_at  BIGINT  NOT NULL,
    duration_us BIGINT  NOT NULL,
    status_code INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    error       TEXT    NOT NULL
);
CREATE INDEX delivery_attempts_task ON delivery_attempts (task_id, number);
