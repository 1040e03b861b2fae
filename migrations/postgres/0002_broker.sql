-- vodkms key broker schema. The broker never reads the KMS tables above.

-- Viewer accounts for apps without their own sign-in.
CREATE TABLE broker_viewers (
    username      TEXT PRIMARY KEY,
    -- argon2id PHC string.
    password_hash TEXT NOT NULL,
    -- JSON array of video ids, or ["*"].
    entitlements  JSONB NOT NULL,
    enabled       BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- Token: one jti. Viewer: every token of that viewer issued at or before
-- revoked_at. Video: no key for the video is released while the row exists.
CREATE TABLE broker_revocations (
    kind       TEXT NOT NULL CONSTRAINT broker_revocations_kind_check CHECK (kind IN ('Token', 'Viewer', 'Video')),
    subject    TEXT NOT NULL,
    revoked_at TIMESTAMPTZ NOT NULL,
    -- After this no token it could refuse is accepted anyway; NULL = until lifted.
    expires_at TIMESTAMPTZ,
    PRIMARY KEY (kind, subject)
);

-- Playback sessions: a token used before it expired keeps releasing keys while
-- playback goes on (see README "Long playback").
CREATE TABLE broker_sessions (
    jti          TEXT PRIMARY KEY,
    viewer       TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    ends_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX broker_sessions_ends_at ON broker_sessions (ends_at);

CREATE TABLE broker_audit (
    seq         BIGSERIAL PRIMARY KEY,
    id          UUID NOT NULL CONSTRAINT broker_audit_id_unique UNIQUE,
    event_time  TIMESTAMPTZ NOT NULL,
    operation   TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    viewer      TEXT,
    video_id    TEXT,
    key_id      UUID,
    key_version INTEGER,
    token_id    TEXT,
    client_id   UUID,
    address     TEXT,
    detail      JSONB
);
CREATE INDEX broker_audit_video_seq ON broker_audit (video_id, seq);
CREATE INDEX broker_audit_viewer_seq ON broker_audit (viewer, seq);
CREATE INDEX broker_audit_time ON broker_audit (event_time);
