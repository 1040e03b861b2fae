-- vodkms key broker schema, embedded SQLite backend. As migrations/postgres.

CREATE TABLE broker_viewers (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    entitlements  TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE broker_revocations (
    kind       TEXT NOT NULL CHECK (kind IN ('Token', 'Viewer', 'Video')),
    subject    TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (kind, subject)
);

CREATE TABLE broker_sessions (
    jti          TEXT PRIMARY KEY,
    viewer       TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    ends_at      INTEGER NOT NULL
);
CREATE INDEX broker_sessions_ends_at ON broker_sessions (ends_at);

CREATE TABLE broker_audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          BLOB NOT NULL UNIQUE,
    event_time  INTEGER NOT NULL,
    operation   TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    viewer      TEXT,
    video_id    TEXT,
    key_id      BLOB,
    key_version INTEGER,
    token_id    TEXT,
    client_id   BLOB,
    address     TEXT,
    detail      TEXT
);
CREATE INDEX broker_audit_video_seq ON broker_audit (video_id, seq);
CREATE INDEX broker_audit_viewer_seq ON broker_audit (viewer, seq);
CREATE INDEX broker_audit_time ON broker_audit (event_time);
