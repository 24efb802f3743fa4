-- The console (issue 15): its users, their invitations and sessions, and
-- the audit log of every change made through the API or the console.
-- Tokens and session IDs are stored only as SHA-256 hashes.

CREATE TABLE console_users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT   NOT NULL UNIQUE,
    org_id        BIGINT NOT NULL,
    name          TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    mobile        TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE console_invitations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash BLOB   NOT NULL UNIQUE,
    email      TEXT   NOT NULL,
    org_id     BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE console_sessions (
    id_hash      BLOB   PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES console_users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ip           TEXT   NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT  NOT NULL,
    org        TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    status     INTEGER NOT NULL,
    ip         TEXT    NOT NULL,
    request_id TEXT    NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org, id);

-- Portal links: single-use, short-lived links that open chosen console
-- sections of one org without an account.
CREATE TABLE console_portal_links (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash      BLOB   NOT NULL UNIQUE,
    org_id          BIGINT NOT NULL,
    sections        TEXT   NOT NULL,
    frame_ancestors TEXT   NOT NULL,
    created_by      TEXT   NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
