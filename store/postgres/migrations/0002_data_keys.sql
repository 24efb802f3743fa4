-- Data keys (the OTP and backup-code HMAC key), sealed under the encryption
-- key, so that rotating the encryption key re-seals them instead of
-- invalidating every stored OTP and backup code.

CREATE TABLE data_keys (
    name       TEXT   PRIMARY KEY,
    sealed     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);
