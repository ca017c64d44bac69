-- Shadow mode: a client with enforce = false is never refused; its would-be refusals are
-- counted (refused) and its RateLimit headers still sent.
ALTER TABLE clients ADD COLUMN enforce BOOLEAN NOT NULL DEFAULT TRUE;
