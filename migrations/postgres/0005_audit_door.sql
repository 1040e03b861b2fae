-- The cloud door a request came through and the access key it was signed
-- with, as columns (not in `detail`): cheap to write on the hot path and to
-- filter on ("everything this access key did").
ALTER TABLE audit_log ADD COLUMN protocol TEXT;
ALTER TABLE audit_log ADD COLUMN access_key_id TEXT;
CREATE INDEX audit_log_access_key_seq ON audit_log (access_key_id, seq) WHERE access_key_id IS NOT NULL;
