-- CENC content keys (see migrations/postgres/0006).
CREATE TABLE broker_content_keys (
    kid             BLOB PRIMARY KEY CHECK (length(kid) = 16),
    video_id        TEXT NOT NULL,
    ciphertext_blob TEXT NOT NULL,
    client_id       BLOB,
    created_at      INTEGER NOT NULL
);
CREATE INDEX broker_content_keys_video ON broker_content_keys (video_id);
