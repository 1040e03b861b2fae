-- As migrations/postgres/0011_audit_chain.sql.
ALTER TABLE audit_log ADD COLUMN writer_id BLOB;
ALTER TABLE audit_log ADD COLUMN writer_seq INTEGER;
ALTER TABLE audit_log ADD COLUMN prev_hash BLOB;
ALTER TABLE audit_log ADD COLUMN row_hash BLOB;

ALTER TABLE broker_audit ADD COLUMN writer_id BLOB;
ALTER TABLE broker_audit ADD COLUMN writer_seq INTEGER;
ALTER TABLE broker_audit ADD COLUMN prev_hash BLOB;
ALTER TABLE broker_audit ADD COLUMN row_hash BLOB;

CREATE TABLE audit_checkpoints (
    writer_id      BLOB NOT NULL,
    number         INTEGER NOT NULL,
    trail          TEXT NOT NULL,
    writer_seq     INTEGER NOT NULL,
    head           TEXT NOT NULL,
    signed_at      INTEGER NOT NULL,
    prev_signature TEXT,
    signature      TEXT NOT NULL,
    last           INTEGER NOT NULL,
    PRIMARY KEY (writer_id, number)
);
