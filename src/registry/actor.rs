//! The `ClientRegistry` actor: database first, memory second; eviction and write-behind timers.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix::{
    fut, Actor, ActorFutureExt, Addr, AsyncContext, AtomicResponse, Context, Handler, MailboxError,
    WrapFuture,
};
use base64::Engine;
use ipnet::IpNet;
use rand::RngCore;

use super::{
    hash_key,
    messages::{
        ClientInput, ClientView, CreateClient, Created, DeleteClient, Flush, PatchClient, PutClient,
        RegistryError,
    },
    BucketCell, ClientEntry, ClientTable, LimitSettings, RegistryHandle, Shared,
};
use crate::{
    ratelimit::{Bucket, Clock, MonotonicClock, Quota},
    store::{self, BucketRow, ClientRow, DbExecutor, InsertClient, ReplaceClient, SaveBuckets, StoreError},
};

/// Timers of the registry.
#[derive(Debug, Clone, Copy)]
pub struct RegistrySettings {
    /// How often changed buckets are written behind.
    pub flush_interval: Duration,
    /// How often full anonymous buckets are dropped.
    pub sweep_interval: Duration,
}

/// Owns the clients, their buckets and their persistence.
pub struct ClientRegistry {
    shared: Arc<Shared>,
    pub(super) db: Addr<DbExecutor>,
    settings: RegistrySettings,
    /// Counts last written per client: unchanged counts mean an unchanged bucket.
    pub(super) flushed: HashMap<String, (u64, u64)>,
    flushing: bool,
}

pub(super) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new API key: 32 random bytes from the thread's CSPRNG, URL-safe base64.
pub(super) fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn key_prefix(key: &str) -> String {
    key.chars().take(8).collect()
}

fn store_error(e: StoreError) -> RegistryError {
    match e {
        StoreError::Conflict { field, message } => RegistryError::Conflict { field, message },
        other => RegistryError::Unavailable(other.to_string()),
    }
}

fn flatten<T>(res: Result<Result<T, StoreError>, MailboxError>) -> Result<T, RegistryError> {
    match res {
        Ok(inner) => inner.map_err(store_error),
        Err(e) => Err(RegistryError::Unavailable(e.to_string())),
    }
}

fn entry_from_row(row: ClientRow, now: u64, wall_ms: i64) -> Result<ClientEntry, String> {
    let quota = Quota::from_parts(
        u64::try_from(row.capacity).map_err(|_| "capacity")?,
        u64::try_from(row.rate_milli).map_err(|_| "rate")?,
    )
    .map_err(|e| e.to_string())?;
    let key_hash = unhex(&row.api_key_hash).ok_or("api_key_hash")?;
    let ips = row
        .ips
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<IpNet>().map_err(|_| format!("ip {s}")))
        .collect::<Result<Vec<_>, _>>()?;
    let bucket = match (row.bucket_level, row.bucket_at) {
        (Some(level), Some(at)) => {
            let elapsed_ns = u64::try_from(wall_ms.saturating_sub(at))
                .unwrap_or(0)
                .saturating_mul(1_000_000);
            Bucket::restored(quota, u128::try_from(level).unwrap_or(0), elapsed_ns, now)
        }
        _ => Bucket::full(quota, now),
    };
    Ok(ClientEntry {
        id: row.client_id,
        name: row.name,
        key_hash,
        key_prefix: row.key_prefix,
        ips,
        enabled: row.enabled,
        created_at: row.created_at,
        updated_at: row.updated_at,
        cell: Arc::new(BucketCell::new(
            bucket,
            u64::try_from(row.admitted).unwrap_or(0),
            u64::try_from(row.refused).unwrap_or(0),
        )),
    })
}

pub(super) fn row_of(e: &ClientEntry, quota: Quota) -> ClientRow {
    ClientRow {
        client_id: e.id.clone(),
        name: e.name.clone(),
        api_key_hash: hex(&e.key_hash),
        key_prefix: e.key_prefix.clone(),
        ips: e
            .ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        capacity: i64::try_from(quota.capacity()).unwrap_or(i64::MAX),
        rate_milli: i64::try_from(quota.rate_milli()).unwrap_or(i64::MAX),
        enabled: e.enabled,
        created_at: e.created_at,
        updated_at: e.updated_at,
        bucket_level: None,
        bucket_at: None,
        admitted: 0,
        refused: 0,
    }
}

type Reply<T> = AtomicResponse<ClientRegistry, Result<T, RegistryError>>;
type Pending<T> = actix::ResponseActFuture<ClientRegistry, Result<T, RegistryError>>;

fn reply_now<T: 'static>(r: Result<T, RegistryError>) -> Reply<T> {
    AtomicResponse::new(Box::pin(fut::ready(r)))
}

impl ClientRegistry {
    /// Builds the registry from the stored rows and starts it on the current arbiter.
    pub fn start_with(
        rows: Vec<ClientRow>,
        limits: LimitSettings,
        db: Addr<DbExecutor>,
        settings: RegistrySettings,
    ) -> RegistryHandle {
        let clock = MonotonicClock::default();
        let (now, wall) = (clock.now(), unix_ms());
        let mut flushed = HashMap::new();
        let entries: Vec<Arc<ClientEntry>> = rows
            .into_iter()
            .filter_map(|row| {
                let id = row.client_id.clone();
                match entry_from_row(row, now, wall) {
                    Ok(e) => {
                        flushed.insert(id, (e.cell.admitted(), e.cell.refused()));
                        Some(Arc::new(e))
                    }
                    Err(field) => {
                        log::error!("stored client {id} is invalid ({field}); skipped");
                        None
                    }
                }
            })
            .collect();
        log::info!("loaded {} client(s)", entries.len());
        let shared = Shared::new(ClientTable::build(entries), limits, clock);
        let addr = ClientRegistry {
            shared: shared.clone(),
            db,
            settings,
            flushed,
            flushing: false,
        }
        .start();
        RegistryHandle::new(shared, addr)
    }

    pub(super) fn now(&self) -> u64 {
        self.shared.clock.now()
    }

    pub(super) fn table(&self) -> Arc<ClientTable> {
        self.shared.table.load_full()
    }

    /// Publishes a table with `entry` added or replaced (by id), or `remove` taken out.
    fn publish(&mut self, entry: Option<Arc<ClientEntry>>, remove: Option<&str>) {
        let current = self.table();
        let mut all: Vec<Arc<ClientEntry>> = current
            .all()
            .filter(|e| Some(e.id.as_str()) != remove && entry.as_ref().is_none_or(|n| n.id != e.id))
            .cloned()
            .collect();
        all.extend(entry);
        self.shared.table.store(Arc::new(ClientTable::build(all)));
    }

    /// Publishes a table with `added` (new ids) added: one rebuild for a whole batch.
    pub(super) fn publish_added(&mut self, added: Vec<Arc<ClientEntry>>) {
        let all: Vec<Arc<ClientEntry>> = self.table().all().cloned().chain(added).collect();
        self.shared.table.store(Arc::new(ClientTable::build(all)));
    }

    fn check_unique(&self, id: &str, key_hash: &[u8; 32], ips: &[IpNet]) -> Result<(), RegistryError> {
        let table = self.table();
        if table.by_key(key_hash).is_some_and(|e| e.id != id) {
            return Err(RegistryError::Conflict {
                field: "api_key",
                message: "this API key belongs to another client".into(),
            });
        }
        for e in table.all().filter(|e| e.id != id) {
            if let Some(net) = ips.iter().find(|n| e.ips.contains(n)) {
                return Err(RegistryError::Conflict {
                    field: "ips",
                    message: format!("{net} is already registered for client {}", e.id),
                });
            }
        }
        Ok(())
    }

    /// Builds a new entry from `input` (fresh, full bucket), checking uniqueness.
    fn new_entry(&self, input: ClientInput) -> Result<(Arc<ClientEntry>, Quota, String), RegistryError> {
        let key = input.api_key.unwrap_or_else(generate_key);
        let key_hash = hash_key(key.as_bytes());
        self.check_unique(&input.client_id, &key_hash, &input.ips)?;
        let now_ms = unix_ms();
        let entry = ClientEntry {
            id: input.client_id,
            name: input.name,
            key_hash,
            key_prefix: key_prefix(&key),
            ips: input.ips,
            enabled: input.enabled,
            created_at: now_ms,
            updated_at: now_ms,
            cell: Arc::new(BucketCell::new(Bucket::full(input.quota, self.now()), 0, 0)),
        };
        Ok((Arc::new(entry), input.quota, key))
    }

    fn insert(
        &mut self,
        entry: Arc<ClientEntry>,
        quota: Quota,
        key: String,
        deadline: Instant,
    ) -> Pending<Created> {
        let row = row_of(&entry, quota);
        Box::pin(
            self.db
                .send(InsertClient(row, deadline))
                .into_actor(self)
                .map(move |res, act, _| {
                    flatten(res)?;
                    act.flushed.insert(entry.id.clone(), (0, 0));
                    act.publish(Some(entry.clone()), None);
                    log::info!("client {} created", entry.id);
                    Ok(Created {
                        view: ClientView::of(&entry, act.now()),
                        api_key: Some(key),
                        created: true,
                    })
                }),
        )
    }

    /// Writes `next` (same bucket cell as the current entry) and switches to it on success.
    fn replace(&mut self, next: ClientEntry, quota: Quota, deadline: Instant) -> Pending<ClientView> {
        let row = row_of(&next, quota);
        let next = Arc::new(next);
        Box::pin(
            self.db
                .send(ReplaceClient(row, deadline))
                .into_actor(self)
                .map(move |res, act, _| {
                    if !flatten(res)? {
                        return Err(RegistryError::NotFound);
                    }
                    let now = act.now();
                    next.cell.with_bucket(|b| b.set_quota(quota, now));
                    act.publish(Some(next.clone()), None);
                    log::info!("client {} updated", next.id);
                    Ok(ClientView::of(&next, now))
                }),
        )
    }

    /// Changed buckets as rows to write behind, with the counts they carry.
    fn dirty_buckets(&self) -> Vec<(BucketRow, (u64, u64))> {
        let (now, wall) = (self.now(), unix_ms());
        self.table()
            .all()
            .filter_map(|e| {
                let counts = (e.cell.admitted(), e.cell.refused());
                if self.flushed.get(&e.id) == Some(&counts) {
                    return None;
                }
                let level = e.cell.with_bucket(|b| b.level_at(now));
                let row = BucketRow {
                    client_id: e.id.clone(),
                    level: i64::try_from(level).unwrap_or(i64::MAX),
                    at: wall,
                    admitted: i64::try_from(counts.0).unwrap_or(i64::MAX),
                    refused: i64::try_from(counts.1).unwrap_or(i64::MAX),
                };
                Some((row, counts))
            })
            .collect()
    }

    fn flush_future(&mut self) -> impl actix::ActorFuture<Self, Output = Result<usize, RegistryError>> {
        let dirty = self.dirty_buckets();
        let n = dirty.len();
        let (rows, counts): (Vec<BucketRow>, Vec<(u64, u64)>) = dirty.into_iter().unzip();
        let ids: Vec<String> = rows.iter().map(|r| r.client_id.clone()).collect();
        let send = (n > 0).then(|| self.db.send(SaveBuckets(rows)));
        async move {
            match send {
                Some(s) => flatten(s.await),
                None => Ok(()),
            }
        }
        .into_actor(self)
        .map(move |res, act, _| {
            res?;
            for (id, c) in ids.into_iter().zip(counts) {
                act.flushed.insert(id, c);
            }
            Ok(n)
        })
    }
}

impl Actor for ClientRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.sweep_interval, |act, _| {
            let dropped = act.shared.anon.sweep(act.now());
            if dropped > 0 {
                log::debug!("dropped {dropped} anonymous bucket(s) that were full again");
            }
        });
        ctx.run_interval(self.settings.flush_interval, |act, ctx| {
            if act.flushing {
                return;
            }
            act.flushing = true;
            let f = act.flush_future().map(|res, act: &mut Self, _| {
                act.flushing = false;
                if let Err(e) = res {
                    log::warn!("bucket write-behind failed, will retry: {e}");
                }
            });
            ctx.spawn(f);
        });
    }
}

impl Handler<CreateClient> for ClientRegistry {
    type Result = Reply<Created>;

    fn handle(&mut self, msg: CreateClient, _: &mut Context<Self>) -> Self::Result {
        let deadline = msg.1;
        if self.table().get(&msg.0.client_id).is_some() {
            return reply_now(Err(RegistryError::Conflict {
                field: "client_id",
                message: format!("client {} already exists", msg.0.client_id),
            }));
        }
        match self.new_entry(msg.0) {
            Ok((entry, quota, key)) => AtomicResponse::new(self.insert(entry, quota, key, deadline)),
            Err(e) => reply_now(Err(e)),
        }
    }
}

impl Handler<PutClient> for ClientRegistry {
    type Result = Reply<Created>;

    fn handle(&mut self, msg: PutClient, _: &mut Context<Self>) -> Self::Result {
        let (input, deadline) = (msg.0, msg.1);
        let Some(current) = self.table().get(&input.client_id).cloned() else {
            return match self.new_entry(input) {
                Ok((entry, quota, key)) => AtomicResponse::new(self.insert(entry, quota, key, deadline)),
                Err(e) => reply_now(Err(e)),
            };
        };
        let (key_hash, prefix, new_key) = match &input.api_key {
            Some(k) => (hash_key(k.as_bytes()), key_prefix(k), true),
            None => (current.key_hash, current.key_prefix.clone(), false),
        };
        if let Err(e) = self.check_unique(&input.client_id, &key_hash, &input.ips) {
            return reply_now(Err(e));
        }
        let next = ClientEntry {
            id: input.client_id,
            name: input.name,
            key_hash,
            key_prefix: prefix,
            ips: input.ips,
            enabled: input.enabled,
            created_at: current.created_at,
            updated_at: unix_ms(),
            cell: current.cell.clone(),
        };
        let key = input.api_key.filter(|_| new_key);
        let replaced = self.replace(next, input.quota, deadline);
        AtomicResponse::new(Box::pin(replaced.map(move |res, _, _| {
            res.map(|view| Created {
                view,
                api_key: key,
                created: false,
            })
        })))
    }
}

impl Handler<PatchClient> for ClientRegistry {
    type Result = Reply<ClientView>;

    fn handle(&mut self, msg: PatchClient, _: &mut Context<Self>) -> Self::Result {
        let Some(current) = self.table().get(&msg.client_id).cloned() else {
            return reply_now(Err(RegistryError::NotFound));
        };
        let p = msg.patch;
        let old = current.cell.with_bucket(|b| b.quota());
        let quota = match Quota::new(
            p.capacity.unwrap_or(old.capacity()),
            p.rate_per_sec.unwrap_or(old.rate_per_sec()),
        ) {
            Ok(q) => q,
            Err(e) => {
                let field = if matches!(e, crate::ratelimit::QuotaError::Capacity) {
                    "capacity"
                } else {
                    "rate_per_sec"
                };
                return reply_now(Err(RegistryError::Invalid {
                    field,
                    message: e.to_string(),
                }));
            }
        };
        let (key_hash, prefix) = match &p.api_key {
            Some(k) => (hash_key(k.as_bytes()), key_prefix(k)),
            None => (current.key_hash, current.key_prefix.clone()),
        };
        let ips = p.ips.unwrap_or_else(|| current.ips.clone());
        if let Err(e) = self.check_unique(&current.id, &key_hash, &ips) {
            return reply_now(Err(e));
        }
        let next = ClientEntry {
            id: current.id.clone(),
            name: p.name.unwrap_or_else(|| current.name.clone()),
            key_hash,
            key_prefix: prefix,
            ips,
            enabled: p.enabled.unwrap_or(current.enabled),
            created_at: current.created_at,
            updated_at: unix_ms(),
            cell: current.cell.clone(),
        };
        AtomicResponse::new(self.replace(next, quota, msg.deadline))
    }
}

impl Handler<DeleteClient> for ClientRegistry {
    type Result = Reply<()>;

    fn handle(&mut self, msg: DeleteClient, _: &mut Context<Self>) -> Self::Result {
        if self.table().get(&msg.0).is_none() {
            return reply_now(Err(RegistryError::NotFound));
        }
        let id = msg.0.clone();
        AtomicResponse::new(Box::pin(
            self.db
                .send(store::DeleteClient(id.clone(), msg.1))
                .into_actor(self)
                .map(move |res, act, _| {
                    if !flatten(res)? {
                        return Err(RegistryError::NotFound);
                    }
                    act.publish(None, Some(&id));
                    act.flushed.remove(&id);
                    log::info!("client {id} deleted");
                    Ok(())
                }),
        ))
    }
}

impl Handler<Flush> for ClientRegistry {
    type Result = Reply<usize>;

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(self.flush_future()))
    }
}
