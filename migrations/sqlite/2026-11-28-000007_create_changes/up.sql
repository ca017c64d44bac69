-- The change log: one row per admin write, in the same transaction as the write. Every
-- instance applies the rows it has not seen (version > its last applied), so a change made
-- on one instance reaches all of them. Old rows are pruned by the instances.
-- AUTOINCREMENT: a version is never reused, even after the newest rows are deleted.
CREATE TABLE changes (
    version   INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    -- What changed: 'client' (other kinds may follow).
    entity    TEXT    NOT NULL,
    entity_id TEXT    NOT NULL,
    op        TEXT    NOT NULL CHECK (op IN ('upsert', 'delete')),
    -- Unix ms of the write.
    at        BIGINT  NOT NULL
);
CREATE INDEX changes_at ON changes (at);
