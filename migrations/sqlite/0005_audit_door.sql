-- The cloud door and access key of a request (see migrations/postgres/0005).
ALTER TABLE audit_log ADD COLUMN protocol TEXT;
ALTER TABLE audit_log ADD COLUMN access_key_id TEXT;
CREATE INDEX audit_log_access_key_seq ON audit_log (access_key_id, seq) WHERE access_key_id IS NOT NULL;
