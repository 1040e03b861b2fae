-- As migrations/postgres/0010_key_lifecycle.sql.
ALTER TABLE keys ADD COLUMN min_decryption_version INTEGER NOT NULL DEFAULT 1
    CHECK (min_decryption_version >= 1);
ALTER TABLE keys ADD COLUMN per_video_keys INTEGER NOT NULL DEFAULT 0;

CREATE TABLE kms_video_secrets (
    video_id       TEXT PRIMARY KEY,
    wrapped_secret BLOB,
    created_at     INTEGER NOT NULL,
    shred_date     INTEGER,
    shredded_at    INTEGER,
    CHECK (shredded_at IS NULL OR wrapped_secret IS NULL)
);
CREATE INDEX kms_video_secrets_shred_date ON kms_video_secrets (shred_date)
    WHERE shred_date IS NOT NULL AND shredded_at IS NULL;
