-- 0006 (compatibility with outside producers and subscribers).
--
-- 1. Delivery idempotency is keyed by the producer too: event IDs (jti,
--    CloudEvents id) are free-form strings chosen by each producer, so two
--    producers may both send "ext-0001"; keyed without the producer the
--    second one's SMS was taken for a duplicate and never sent. The key is
--    (org_id, event_source, event_id, destination_type, destination_id),
--    event_source being the event's iss / ce_source. Tasks written before
--    keep event_source '' (their events are long expired or delivered).
--    SQLite cannot change a table constraint, so delivery_tasks (and
--    delivery_attempts, which references it) is rebuilt as in 0003.
-- 2. subscriptions.auto_renew: the subscriber asked for no lease
--    (hub.lease_seconds absent), so the hub renews the lease itself by
--    verifying intent again before it ends (docs/websub.md).
-- 3. payload_encryption: orgs that have Asgardeo-format deliveries
--    encrypted with their key-service key, and which generation of that
--    key is current (rotation; the keys are data keys) (docs/compatibility.md).

CREATE TABLE delivery_tasks_new (
    id               TEXT    PRIMARY KEY,
    org_id           BIGINT  NOT NULL,
    event_source     TEXT    NOT NULL,
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
    UNIQUE (org_id, event_source, event_id, destination_type, destination_id)
);
INSERT INTO delivery_tasks_new (id, org_id, event_source, event_id, destination_type, destination_id, event, status, attempts,
        next_attempt_at, expires_at, lease_owner, lease_until, last_error, last_status_code, created_at, updated_at)
    SELECT id, org_id, '', event_id, destination_type, destination_id, event, status, attempts,
        next_attempt_at, expires_at, lease_owner, lease_until, last_error, last_status_code, created_at, updated_at
    FROM delivery_tasks;

CREATE TABLE delivery_attempts_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT    NOT NULL REFERENCES delivery_tasks_new (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    started_at  BIGINT  NOT NULL,
    duration_us BIGINT  NOT NULL,
    status_code INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    error       TEXT    NOT NULL
);
INSERT INTO delivery_attempts_new (id, task_id, number, started_at, duration_us, status_code, outcome, error)
    SELECT id, task_id, number, started_at, duration_us, status_code, outcome, error
    FROM delivery_attempts;

DROP TABLE delivery_attempts;
DROP TABLE delivery_tasks;
-- Renaming rewrites delivery_attempts_new's REFERENCES to delivery_tasks.
ALTER TABLE delivery_tasks_new RENAME TO delivery_tasks;
ALTER TABLE delivery_attempts_new RENAME TO delivery_attempts;

CREATE INDEX delivery_tasks_due ON delivery_tasks (next_attempt_at) WHERE status = 'pending';
CREATE INDEX delivery_tasks_org ON delivery_tasks (org_id, created_at, id);
CREATE INDEX delivery_tasks_finished ON delivery_tasks (updated_at) WHERE status <> 'pending';
CREATE INDEX delivery_attempts_task ON delivery_attempts (task_id, number);

ALTER TABLE subscriptions ADD COLUMN auto_renew BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE payload_encryption (
    org_id         BIGINT  PRIMARY KEY,
    enabled        BOOLEAN NOT NULL,
    key_generation BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);
