-- Registered clients of the gateway, their limits and their bucket state (written behind).
CREATE TABLE clients (
    client_id    TEXT         PRIMARY KEY NOT NULL,
    name         TEXT,
    -- SHA-256 of the API key, hex; the key itself is never stored.
    api_key_hash TEXT         NOT NULL UNIQUE,
    key_prefix   TEXT  NOT NULL,
    -- Comma-separated addresses and CIDR blocks that identify the client without a key.
    ips          TEXT         NOT NULL DEFAULT '',
    capacity     INTEGER      NOT NULL CHECK (capacity >= 1),
    -- Tokens per 1000 seconds (rate_per_sec * 1000).
    rate_milli   INTEGER      NOT NULL CHECK (rate_milli >= 1),
    enabled      BOOLEAN      NOT NULL DEFAULT TRUE,
    created_at   INTEGER      NOT NULL,
    updated_at   INTEGER      NOT NULL,
    -- Bucket level in units (one token = 10^12 units) at bucket_at (Unix ms); NULL = full.
    bucket_level BIGINT,
    bucket_at    BIGINT,
    admitted     INTEGER      NOT NULL DEFAULT 0,
    refused      INTEGER      NOT NULL DEFAULT 0
);
