-- The backends the gateway proxies to, shared by every instance on this database. Written by
-- the admin API and by TOLLGATE_BACKENDS at start (which replaces the list); every write
-- records a change ('backend') in the same transaction.
CREATE TABLE backends (
    -- Stable id shown by GET /backends (`b-` and 16 hex digits); never reused.
    id         TEXT    PRIMARY KEY NOT NULL,
    -- Base URL without a trailing slash.
    url        TEXT    NOT NULL UNIQUE,
    weight     BIGINT  NOT NULL CHECK (weight >= 1),
    -- FALSE: listed, takes no new requests.
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    -- Order shown: the configured list first, API additions after.
    position   BIGINT  NOT NULL DEFAULT 0,
    -- Unix ms.
    created_at BIGINT  NOT NULL
);
