-- Key lifecycle (issue 17): retiring old master key versions, and per-video
-- secrets for crypto-shredding.

-- Blobs sealed under a version below this are refused (KeyVersionRetired).
-- An admin may lower it again to undo.
ALTER TABLE keys ADD COLUMN min_decryption_version INTEGER NOT NULL DEFAULT 1
    CONSTRAINT keys_min_decryption_version_check CHECK (min_decryption_version >= 1);
-- Data keys minted with a video_id context are bound to that video's secret
-- (blob format v2).
ALTER TABLE keys ADD COLUMN per_video_keys BOOLEAN NOT NULL DEFAULT FALSE;

-- One secret per video id, wrapped under the root key (AAD binds the video
-- id). Shredding sets wrapped_secret to NULL for good; the row stays as a
-- tombstone, so the video's blobs are refused as VideoShredded and no new
-- secret is ever made under the same id.
CREATE TABLE kms_video_secrets (
    video_id       TEXT PRIMARY KEY,
    wrapped_secret BYTEA,
    created_at     TIMESTAMPTZ NOT NULL,
    -- Set while a shred is scheduled (cancellable until then).
    shred_date     TIMESTAMPTZ,
    shredded_at    TIMESTAMPTZ,
    CONSTRAINT kms_video_secrets_shredded_check CHECK (shredded_at IS NULL OR wrapped_secret IS NULL)
);
CREATE INDEX kms_video_secrets_shred_date ON kms_video_secrets (shred_date)
    WHERE shred_date IS NOT NULL AND shredded_at IS NULL;
