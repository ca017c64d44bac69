-- Which incarnation of its id a row is: a client deleted and created again with the same id
-- is a new row with a new generation (the change-log version its insert followed, to 32
-- bits), so that a lease, a give-back or a write-behind meant for the old one, still in
-- flight when the new one is created, matches no row. Rows from before this column are 0.
ALTER TABLE clients ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
