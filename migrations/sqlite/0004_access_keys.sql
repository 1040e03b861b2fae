-- Access keys of API clients for the cloud-compatible doors; the secret is
-- stored only wrapped under the root key (see migrations/postgres/0004).
CREATE TABLE access_keys (
    id             TEXT PRIMARY KEY,
    client_id      BLOB NOT NULL REFERENCES api_clients (id),
    wrapped_secret BLOB NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX access_keys_client_id ON access_keys (client_id);
