-- The change log: one row per admin write, in the same transaction as the write. Every
-- instance applies the rows it has not seen (version > its last applied), so a change made
-- on one instance reaches all of them. Old rows are pruned by the instances.
CREATE TABLE changes (
    version   BIGSERIAL   PRIMARY KEY,
    -- What changed: 'client' (other kinds may follow).
    entity    VARCHAR(16) NOT NULL,
    entity_id VARCHAR(64) NOT NULL,
    op        VARCHAR(8)  NOT NULL CHECK (op IN ('upsert', 'delete')),
    -- Unix ms of the write.
    at        BIGINT      NOT NULL
);
CREATE INDEX changes_at ON changes (at);
