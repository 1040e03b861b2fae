-- vodkms KMS schema, embedded SQLite backend (`vodkms dev`). Same tables as
-- migrations/postgres; times are INTEGER microseconds since the epoch (they
-- sort and add exactly), UUIDs 16-byte BLOBs, arrays and JSON as TEXT.

CREATE TABLE root_key_check (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    check_value BLOB NOT NULL
);

CREATE TABLE keys (
    id                   BLOB PRIMARY KEY,
    description          TEXT NOT NULL DEFAULT '',
    state                TEXT NOT NULL CHECK (state IN ('Enabled', 'Disabled', 'PendingDeletion', 'Deleted')),
    primary_version      INTEGER NOT NULL CHECK (primary_version >= 1),
    rotation_period_days INTEGER CHECK (rotation_period_days >= 1),
    last_rotated_at      INTEGER NOT NULL,
    deletion_date        INTEGER,
    created_at           INTEGER NOT NULL
);

CREATE TABLE key_aliases (
    alias  TEXT PRIMARY KEY,
    key_id BLOB NOT NULL REFERENCES keys (id)
);
CREATE INDEX key_aliases_key_id ON key_aliases (key_id);

CREATE TABLE key_versions (
    key_id               BLOB NOT NULL REFERENCES keys (id),
    version              INTEGER NOT NULL CHECK (version >= 1),
    wrapped_material     BLOB NOT NULL,
    encryptions_reserved INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    PRIMARY KEY (key_id, version)
);

CREATE TABLE api_clients (
    id           BLOB PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    -- JSON array of key ids, or NULL for every key.
    key_ids      TEXT,
    token_sha256 BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

CREATE TABLE audit_log (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 BLOB NOT NULL UNIQUE,
    event_time         INTEGER NOT NULL,
    client_id          BLOB,
    operation          TEXT NOT NULL,
    key_id             BLOB,
    key_version        INTEGER,
    encryption_context TEXT,
    outcome            TEXT NOT NULL,
    request_id         TEXT NOT NULL,
    detail             TEXT
);
CREATE INDEX audit_log_key_seq ON audit_log (key_id, seq);
CREATE INDEX audit_log_client_seq ON audit_log (client_id, seq);
CREATE INDEX audit_log_time ON audit_log (event_time);
