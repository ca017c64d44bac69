-- Tokens granted to an instance by the last lease step on this row: the lease statement sets
-- it with the new level in one UPDATE and returns it (RETURNING sees only new values).
ALTER TABLE clients ADD COLUMN last_grant BIGINT NOT NULL DEFAULT 0;
