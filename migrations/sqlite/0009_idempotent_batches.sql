-- As migrations/postgres/0009_idempotent_batches.sql.
CREATE TABLE kms_idempotent_batches (
    client_id    BLOB NOT NULL,
    client_token TEXT NOT NULL,
    fingerprint  BLOB NOT NULL,
    blobs        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (client_id, client_token)
);
CREATE INDEX kms_idempotent_batches_created_at ON kms_idempotent_batches (created_at);
