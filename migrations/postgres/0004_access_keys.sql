-- Access keys of API clients, for the cloud-compatible doors (AWS SigV4,
-- Alibaba ACS3/RPC, Tencent TC3). Their signatures are HMACs, so the server
-- needs the secret itself: it is stored only wrapped under the root key
-- (AES-256-GCM, AAD = label + access key id + client id), never in plain form
-- and never only as a hash. A deleted access key's row is gone; the audit log
-- keeps its history.
CREATE TABLE access_keys (
    id             TEXT PRIMARY KEY,
    client_id      UUID NOT NULL REFERENCES api_clients (id),
    wrapped_secret BYTEA NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX access_keys_client_id ON access_keys (client_id);
