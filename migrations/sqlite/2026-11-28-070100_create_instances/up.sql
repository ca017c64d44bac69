-- Gateway instances sharing this database: each registers at start, heartbeats every second
-- and removes its row on graceful shutdown. Times are Unix ms on the database's own clock,
-- so that the instances' clocks cannot skew who looks alive.
CREATE TABLE instances (
    instance_id     TEXT     PRIMARY KEY NOT NULL,
    host            TEXT     NOT NULL DEFAULT '',
    proxy_addr      TEXT     NOT NULL,
    admin_addr      TEXT     NOT NULL,
    version         TEXT     NOT NULL,
    started_at      BIGINT   NOT NULL,
    last_heartbeat  BIGINT   NOT NULL,
    -- The change-log version this instance has applied (0 until it applies any).
    applied_version BIGINT   NOT NULL DEFAULT 0
);
