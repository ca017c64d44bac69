-- Registered clients of the gateway, their limits and their bucket state (written behind).
CREATE TABLE clients (
    client_id    VARCHAR(64)  PRIMARY KEY,
    name         VARCHAR(200),
    -- SHA-256 of the API key, hex; the key itself is never stored.
    api_key_hash CHAR(64)     NOT NULL UNIQUE,
    key_prefix   VARCHAR(16)  NOT NULL,
    -- Comma-separated addresses and CIDR blocks that identify the client without a key.
    ips          TEXT         NOT NULL DEFAULT '',
    capacity     BIGINT       NOT NULL CHECK (capacity >= 1),
    -- Tokens per 1000 seconds (rate_per_sec * 1000).
    rate_milli   BIGINT       NOT NULL CHECK (rate_milli >= 1),
    enabled      BOOLEAN      NOT NULL DEFAULT TRUE,
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL,
    -- Bucket level in units (one token = 10^12 units) at bucket_at (Unix ms); NULL = full.
    bucket_level BIGINT,
    bucket_at    BIGINT,
    admitted     BIGINT       NOT NULL DEFAULT 0,
    refused      BIGINT       NOT NULL DEFAULT 0
);
