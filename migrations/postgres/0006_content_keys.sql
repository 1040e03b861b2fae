-- CENC content keys (Clear Key): a key id (KID, 16 bytes, in the media's
-- init segments) names the video it belongs to and its data key's EDK (never
-- the key). The licence endpoint decrypts the EDK with the video's context.
CREATE TABLE broker_content_keys (
    kid             BYTEA PRIMARY KEY CHECK (length(kid) = 16),
    video_id        TEXT NOT NULL,
    ciphertext_blob TEXT NOT NULL,
    client_id       UUID,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX broker_content_keys_video ON broker_content_keys (video_id);
