-- As migrations/postgres/0003: revocations read incrementally by seq (write
-- transactions are IMMEDIATE, so seq order is commit order), lifts kept as
-- tombstones until they expire.
ALTER TABLE broker_revocations ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE broker_revocations ADD COLUMN lifted INTEGER NOT NULL DEFAULT 0;
UPDATE broker_revocations SET seq = rowid;
CREATE INDEX broker_revocations_seq ON broker_revocations (seq);
