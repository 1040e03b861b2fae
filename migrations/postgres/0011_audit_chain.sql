-- Tamper-evident audit (DESIGN.md): each record's place in its writer's
-- hash chain, and the writers' signed checkpoints. Records from before this
-- migration have no chain fields; `vodkms audit verify` reports them.
-- No index on (writer_id, writer_seq): the verifier reads in storage order
-- (each writer's commit order) by `seq`, and an index would cost every
-- audit insert (measured: about a fifth of the audit writer's throughput).
ALTER TABLE audit_log
    ADD COLUMN writer_id  UUID,
    ADD COLUMN writer_seq BIGINT,
    ADD COLUMN prev_hash  BYTEA,
    ADD COLUMN row_hash   BYTEA;

ALTER TABLE broker_audit
    ADD COLUMN writer_id  UUID,
    ADD COLUMN writer_seq BIGINT,
    ADD COLUMN prev_hash  BYTEA,
    ADD COLUMN row_hash   BYTEA;

CREATE TABLE audit_checkpoints (
    writer_id      UUID NOT NULL,
    number         BIGINT NOT NULL,
    trail          TEXT NOT NULL,
    writer_seq     BIGINT NOT NULL,
    head           TEXT NOT NULL,
    signed_at      TIMESTAMPTZ NOT NULL,
    prev_signature TEXT,
    signature      TEXT NOT NULL,
    last           BOOLEAN NOT NULL,
    PRIMARY KEY (writer_id, number)
);
