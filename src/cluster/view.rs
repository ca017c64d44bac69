//! What `GET /cluster` shows: the instances as last read from the database, aged to the
//! moment of the request, with the policy of [`Liveness`] applied.

use std::time::Duration;

use serde::Serialize;

use super::liveness::{Liveness, State};
use crate::store::InstanceRow;

/// Whether this instance's last heartbeat reached the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseStatus {
    /// The last heartbeat was written and the instances read.
    Ok,
    /// The last heartbeat failed: the list is the last one read.
    Unreachable,
}

/// One instance in `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    /// Random id, new at each process start.
    pub instance_id: String,
    /// Host name.
    pub host: String,
    /// Proxy listener address.
    pub proxy_addr: String,
    /// Admin listener address.
    pub admin_addr: String,
    /// Gateway version.
    pub version: String,
    /// RFC 3339 (database clock).
    pub started_at: String,
    /// RFC 3339 (database clock).
    pub last_heartbeat: String,
    /// Seconds since the last heartbeat, now.
    pub seconds_since_heartbeat: f64,
    /// Change-log version the instance has applied.
    pub applied_version: i64,
    /// Fewer than the allowed heartbeats missed.
    pub alive: bool,
    /// This is the instance answering.
    #[serde(rename = "self")]
    pub this: bool,
}

/// The body of `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// The instance answering.
    pub instance_id: String,
    /// The database as this instance sees it.
    pub database: DatabaseStatus,
    /// Time between two heartbeats, ms.
    pub heartbeat_interval_ms: u64,
    /// An instance silent for longer than this is shown dead, ms.
    pub dead_after_ms: u64,
    /// A dead instance's row is removed this long after its last heartbeat, seconds.
    pub removed_after_s: u64,
    /// Live ones first, then dead ones; each group ordered by id.
    pub instances: Vec<InstanceView>,
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// The view of `rows`, read `age` ago, for instance `me`.
pub fn build(
    rows: &[InstanceRow],
    age: Duration,
    liveness: &Liveness,
    me: &str,
    database: DatabaseStatus,
) -> ClusterView {
    let mut instances: Vec<InstanceView> = rows
        .iter()
        .filter_map(|r| {
            let at_read = Duration::from_millis(u64::try_from(r.db_now - r.last_heartbeat).unwrap_or(0));
            let since = at_read + age;
            let alive = match liveness.state(since) {
                State::Alive => true,
                State::Dead => false,
                State::Expired => return None,
            };
            Some(InstanceView {
                instance_id: r.instance_id.clone(),
                host: r.host.clone(),
                proxy_addr: r.proxy_addr.clone(),
                admin_addr: r.admin_addr.clone(),
                version: r.version.clone(),
                started_at: rfc3339(r.started_at),
                last_heartbeat: rfc3339(r.last_heartbeat),
                seconds_since_heartbeat: (since.as_millis() as f64) / 1000.0,
                applied_version: r.applied_version,
                alive,
                this: r.instance_id == me,
            })
        })
        .collect();
    // Stable: rows come ordered by id.
    instances.sort_by_key(|i| !i.alive);
    ClusterView {
        instance_id: me.to_string(),
        database,
        heartbeat_interval_ms: u64::try_from(liveness.interval.as_millis()).unwrap_or(u64::MAX),
        dead_after_ms: u64::try_from((liveness.interval * liveness.missed).as_millis()).unwrap_or(u64::MAX),
        removed_after_s: liveness.retention.as_secs(),
        instances,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, last_heartbeat: i64, db_now: i64) -> InstanceRow {
        InstanceRow {
            instance_id: id.into(),
            host: "h".into(),
            proxy_addr: "127.0.0.1:1".into(),
            admin_addr: "127.0.0.1:2".into(),
            version: "0".into(),
            started_at: 0,
            last_heartbeat,
            applied_version: 4,
            db_now,
        }
    }

    #[test]
    fn instances_are_aged_to_the_request_and_judged_by_the_policy() {
        let rows = [
            row("a", 10_000, 10_500),
            row("b", 8_000, 10_500),
            row("c", 6_000, 10_500),
            row("d", 10_500 - 3_600_500, 10_500),
        ];
        let l = Liveness::default();
        // (age of the read, ids shown alive, ids shown dead)
        for (age_ms, alive, dead) in [
            (0, vec!["a", "b"], vec!["c"]),
            (500, vec!["a", "b"], vec!["c"]),
            (600, vec!["a"], vec!["b", "c"]),
            (3_000, vec![], vec!["a", "b", "c"]),
        ] {
            let v = build(&rows, Duration::from_millis(age_ms), &l, "a", DatabaseStatus::Ok);
            let ids = |want: bool| -> Vec<&str> {
                v.instances
                    .iter()
                    .filter(|i| i.alive == want)
                    .map(|i| i.instance_id.as_str())
                    .collect()
            };
            assert_eq!(ids(true), alive, "age {age_ms} ms");
            assert_eq!(ids(false), dead, "age {age_ms} ms");
            assert!(
                v.instances.iter().all(|i| i.instance_id != "d"),
                "expired rows are not shown"
            );
        }
        let v = build(
            &rows,
            Duration::from_millis(250),
            &l,
            "a",
            DatabaseStatus::Unreachable,
        );
        assert_eq!(v.instances[0].seconds_since_heartbeat, 0.75);
        assert!(v.instances[0].this && !v.instances[1].this);
        assert_eq!(v.instances[0].last_heartbeat, "1970-01-01T00:00:10.000Z");
        assert_eq!(v.database, DatabaseStatus::Unreachable);
        assert_eq!(v.dead_after_ms, 3_000);
    }
}
