-- vodkms KMS schema. Migrations are never edited after they land: add a new file.

-- One row: proves the configured root key is the one this database was made with.
CREATE TABLE root_key_check (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    check_value BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE keys (
    id                   UUID PRIMARY KEY,
    description          TEXT NOT NULL DEFAULT '',
    state                TEXT NOT NULL
        CONSTRAINT keys_state_check CHECK (state IN ('Enabled', 'Disabled', 'PendingDeletion', 'Deleted')),
    primary_version      INTEGER NOT NULL CHECK (primary_version >= 1),
    rotation_period_days INTEGER CHECK (rotation_period_days >= 1),
    last_rotated_at      TIMESTAMPTZ NOT NULL,
    deletion_date        TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL
);

CREATE TABLE key_aliases (
    alias  TEXT PRIMARY KEY,
    key_id UUID NOT NULL REFERENCES keys (id)
);
CREATE INDEX key_aliases_key_id ON key_aliases (key_id);

-- Master key versions, wrapped under the root key (AES-256-GCM, AAD = key id + version).
CREATE TABLE key_versions (
    key_id               UUID NOT NULL REFERENCES keys (id),
    version              INTEGER NOT NULL CHECK (version >= 1),
    wrapped_material     BYTEA NOT NULL,
    -- Encryptions handed out in blocks to processes; never above 2^32 per version.
    encryptions_reserved BIGINT NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (key_id, version)
);

CREATE TABLE api_clients (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    key_ids      UUID[],
    token_sha256 BYTEA NOT NULL CONSTRAINT api_clients_token_unique UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);

CREATE TABLE audit_log (
    seq                BIGSERIAL PRIMARY KEY,
    id                 UUID NOT NULL CONSTRAINT audit_log_id_unique UNIQUE,
    event_time         TIMESTAMPTZ NOT NULL,
    client_id          UUID,
    operation          TEXT NOT NULL,
    key_id             UUID,
    key_version        INTEGER,
    encryption_context JSONB,
    outcome            TEXT NOT NULL,
    request_id         TEXT NOT NULL,
    detail             JSONB
);
CREATE INDEX audit_log_key_seq ON audit_log (key_id, seq);
CREATE INDEX audit_log_client_seq ON audit_log (client_id, seq);
CREATE INDEX audit_log_time ON audit_log (event_time);
