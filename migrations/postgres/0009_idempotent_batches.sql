-- Batches of data keys minted under a caller's ClientToken
-- (POST /v1/generate-data-keys): a retry within a day returns the same keys,
-- opened again from these blobs. Blobs only, never a plaintext key.
CREATE TABLE kms_idempotent_batches (
    client_id    UUID NOT NULL,
    client_token TEXT NOT NULL,
    fingerprint  BYTEA NOT NULL,
    -- JSON array of the blobs' text form, in order.
    blobs        TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (client_id, client_token)
);
CREATE INDEX kms_idempotent_batches_created_at ON kms_idempotent_batches (created_at);
