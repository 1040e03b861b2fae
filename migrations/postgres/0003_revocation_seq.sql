-- Revocations are read incrementally by sequence (security review L6): every
-- change gets a higher seq, and writers take an advisory lock first, so seq
-- order is commit order and a reader that has seen seq N has seen every
-- change up to N. A lifted revocation stays as a tombstone (lifted) until it
-- expires, so readers learn of the lift the same way.
CREATE SEQUENCE broker_revocation_seq;
ALTER TABLE broker_revocations ADD COLUMN seq BIGINT NOT NULL DEFAULT nextval('broker_revocation_seq');
ALTER TABLE broker_revocations ADD COLUMN lifted BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX broker_revocations_seq ON broker_revocations (seq);
