//! Admin writes: database first (the change and its change-log row in one transaction),
//! memory second, one at a time in arrival order.
//!
//! The database decides every answer, not memory, which may not have applied another
//! instance's change yet: an insert finds a taken id or key, a delete finds the row or not,
//! and a replace writes only over the row memory saw (its generation and `updated_at`); a row
//! changed elsewhere is read back, applied, and the write tried again on it.
//!
//! A write is queued as a [`Job`]; the actor runs the next job when the previous one is
//! done. Each job validates against the table as the previous writes left it, then waits for
//! the database as a spawned future, so the actor's timers keep running meanwhile (an
//! `AtomicResponse` would stall them for as long as the database takes).

use std::{sync::Arc, time::Instant};

use actix::{
    fut, ActorFutureExt, AsyncContext, Context, Handler, ResponseActFuture, ResponseFuture, WrapFuture,
};
use base64::Engine;
use ipnet::IpNet;
use rand::RngCore;
use tokio::sync::oneshot;

use super::{
    actor::flatten,
    hash_key, key_id,
    messages::{
        ClientInput, ClientView, CreateClient, Created, PatchClient, PutClient, RegistryError, RemoveClient,
    },
    rows::{row_of, unix_ms},
    BucketCell, ClientEntry, ClientExtra, ClientRegistry, KeyPrefix,
};
use crate::{
    ratelimit::Quota,
    store::{ClientRow, ClientWrite, ReadClients, WriteClient, Written},
};

/// One queued admin write: started when its turn comes, replies on its own channel.
pub(super) type Job = Box<dyn FnOnce(&mut ClientRegistry) -> ResponseActFuture<ClientRegistry, ()>>;

type Pending<T> = ResponseActFuture<ClientRegistry, Result<T, RegistryError>>;

fn ready<T: 'static>(r: Result<T, RegistryError>) -> Pending<T> {
    Box::pin(fut::ready(r))
}

/// A new API key: 32 random bytes from the thread's CSPRNG, URL-safe base64.
pub(super) fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl ClientRegistry {
    /// Queues `start` (run when the writes before it are done) and answers with its result.
    fn enqueue<T: Send + 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        start: impl FnOnce(&mut ClientRegistry) -> Pending<T> + 'static,
    ) -> ResponseFuture<Result<T, RegistryError>> {
        self.enqueue_with(ctx, start, || {
            Err(RegistryError::Unavailable("the client registry stopped".into()))
        })
    }

    /// [`Self::enqueue`] for any result; `stopped` is the answer when the registry stops
    /// before the job ran.
    pub(super) fn enqueue_with<R: Send + 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        start: impl FnOnce(&mut ClientRegistry) -> ResponseActFuture<ClientRegistry, R> + 'static,
        stopped: impl FnOnce() -> R + Send + 'static,
    ) -> ResponseFuture<R> {
        let (tx, rx) = oneshot::channel();
        self.queue.push_back(Box::new(move |act: &mut ClientRegistry| {
            Box::pin(start(act).map(move |res, _, _| {
                let _ = tx.send(res);
            }))
        }));
        self.pump(ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| stopped()) })
    }

    /// Starts the next queued write unless one is in flight.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        let Some(job) = self.queue.pop_front() else { return };
        self.writing = true;
        let f = job(self).map(|(), act: &mut ClientRegistry, ctx| {
            act.writing = false;
            act.pump(ctx);
        });
        ctx.spawn(f);
    }

    /// Checks that the addresses are not another client's. Addresses are checked here only
    /// (the database has no constraint on them); ids and keys are the database's to decide.
    fn check_ips(&self, id: &str, ips: &[IpNet]) -> Result<(), RegistryError> {
        for net in ips {
            if let Some(e) = self.table().by_net(net).filter(|e| &*e.id != id) {
                return Err(RegistryError::Conflict {
                    field: "ips",
                    message: format!("{net} is already registered for client {}", e.id),
                });
            }
        }
        Ok(())
    }

    /// Builds a new entry from `input`; its cell is made once the database gave the row its
    /// generation (see [`Self::insert`]).
    fn new_entry(&self, mut input: ClientInput) -> Result<(ClientEntry, Quota, String), RegistryError> {
        let key = input.api_key.take().unwrap_or_else(generate_key);
        let key_hash = hash_key(key.as_bytes());
        self.check_ips(&input.client_id, &input.ips)?;
        let quota = input.quota;
        let scope = self.shared.share.scope();
        let entry = ClientEntry::created(
            input,
            &key,
            key_hash,
            scope.fresh_bucket(quota, self.now()),
            unix_ms(),
            0,
        );
        Ok((entry, quota, key))
    }

    /// Inserts the row of `entry`: the database decides whether the id (or key) is taken. On
    /// success publishes it with a new cell (full bucket) of the row's generation, replacing
    /// whatever this instance still held under its id (an older incarnation whose delete has
    /// not reached it yet).
    fn insert(
        &mut self,
        entry: ClientEntry,
        quota: Quota,
        key: String,
        deadline: Instant,
    ) -> Pending<Created> {
        let write = WriteClient {
            write: ClientWrite::Insert(row_of(&entry, quota, Some(&hash_key(key.as_bytes())))),
            at: entry.updated_at,
            deadline,
        };
        Box::pin(self.db.send(write).into_actor(self).map(move |res, act, _| {
            let Some(written) = flatten(res)? else {
                return Err(RegistryError::Unavailable("the insert wrote nothing".into()));
            };
            let bucket = act.shared.share.scope().fresh_bucket(quota, act.now());
            let entry = Arc::new(ClientEntry {
                cell: Arc::new(BucketCell::new(bucket, 0, 0, written.generation)),
                ..entry
            });
            act.table().upsert(entry.clone());
            act.sync.applied(&entry.id, Some(written.version));
            log::info!("client {} created (change {})", entry.id, written.version);
            Ok(Created {
                view: ClientView::of(&entry, act.now(), act.shared.share.scope()),
                api_key: Some(key),
                created: true,
            })
        }))
    }

    /// Writes `next` (same bucket cell as the current entry; `key_hash` when its key is new)
    /// if the row is still the one memory saw (its generation, last written at `seen`), and
    /// switches to it on success. `NotFound` when it is not (gone, or changed elsewhere
    /// since): the caller re-reads it.
    fn replace(
        &mut self,
        next: ClientEntry,
        quota: Quota,
        key_hash: Option<[u8; 32]>,
        seen: i64,
        deadline: Instant,
    ) -> Pending<ClientView> {
        let write = WriteClient {
            write: ClientWrite::Replace {
                row: row_of(&next, quota, key_hash.as_ref()),
                seen,
            },
            at: next.updated_at,
            deadline,
        };
        let next = Arc::new(next);
        Box::pin(self.db.send(write).into_actor(self).map(move |res, act, _| {
            let Some(Written { version, .. }) = flatten(res)? else {
                return Err(RegistryError::NotFound);
            };
            let now = act.now();
            let scope = act.shared.share.scope();
            next.cell.with_bucket(|b| scope.requota(b, quota, now));
            act.table().upsert(next.clone());
            act.sync.applied(&next.id, Some(version));
            log::info!("client {} updated (change {version})", next.id);
            Ok(ClientView::of(&next, now, scope))
        }))
    }

    /// Re-reads the row of `id` and applies it to memory (memory's view was older than the
    /// database), then goes on with `next` and the entry now under `id` (`None`: the database
    /// has no such client, and memory drops it too).
    fn reload_then<T: 'static>(
        &mut self,
        id: String,
        deadline: Instant,
        next: impl FnOnce(&mut ClientRegistry, Option<Arc<ClientEntry>>) -> Pending<T> + 'static,
    ) -> Pending<T> {
        Box::pin(
            self.reload(vec![id.clone()], deadline)
                .then(move |res, act, _| match res {
                    Ok(()) => {
                        let found = act.table().get(&id);
                        next(act, found)
                    }
                    Err(e) => ready(Err(e)),
                }),
        )
    }

    /// Re-reads the rows of `ids` and applies them to memory; an id without a row is dropped.
    pub(super) fn reload(&mut self, ids: Vec<String>, deadline: Instant) -> Pending<()> {
        let read = self.db.send(ReadClients {
            ids: ids.clone(),
            deadline,
        });
        Box::pin(read.into_actor(self).map(move |res, act, _| {
            let (rows, version) = flatten(res)?;
            act.apply_read(ids, rows, version);
            Ok(())
        }))
    }

    /// Applies rows read at (at least) change `version`: each id of `ids` as its row says.
    fn apply_read(&mut self, ids: Vec<String>, rows: Vec<ClientRow>, version: i64) {
        let mut rows: std::collections::HashMap<String, ClientRow> =
            rows.into_iter().map(|r| (r.client_id.clone(), r)).collect();
        for id in ids {
            // The change log's catch-up may have applied a newer change of this id while the
            // read was on its way (both run on this actor, their statements in any order):
            // the read is then older than the table, and applying it would undo that change.
            if !self.sync.is_new(&id, version) {
                continue;
            }
            match rows.remove(&id) {
                Some(row) => self.apply_row(row, version),
                None => {
                    if self.table().remove(&id).is_some() {
                        log::info!("client {id} was deleted on another instance (read back)");
                    }
                }
            }
            // The row reflects every change up to `version`: older ones are not applied again.
            self.sync.applied(&id, Some(version));
        }
    }

    /// A write that found the row changed `ATTEMPTS` times in a row gives up.
    fn busy<T: 'static>(id: &str) -> Pending<T> {
        ready(Err(RegistryError::Conflict {
            field: "client_id",
            message: format!("client {id} kept changing meanwhile; try again"),
        }))
    }

    fn create(&mut self, input: ClientInput, deadline: Instant) -> Pending<Created> {
        match self.new_entry(input) {
            Ok((entry, quota, key)) => self.insert(entry, quota, key, deadline),
            Err(e) => ready(Err(e)),
        }
    }

    fn put(&mut self, input: ClientInput, deadline: Instant, attempts: u32) -> Pending<Created> {
        let id = input.client_id.clone();
        let Some(current) = self.table().get(&input.client_id) else {
            // Created here unless the database has it (created elsewhere, not applied here
            // yet; the database may name the id or, the same row's, the key): then re-read
            // and replace.
            let retry = input.clone();
            let inserted = match self.new_entry(input) {
                Ok((entry, quota, key)) => self.insert(entry, quota, key, deadline),
                Err(e) => return ready(Err(e)),
            };
            return Box::pin(inserted.then(move |res, act, _| match res {
                Err(conflict @ RegistryError::Conflict { .. }) => {
                    act.reload_then(id.clone(), deadline, move |act, found| match found {
                        None => ready(Err(conflict)),
                        Some(_) if attempts == 0 => Self::busy(&id),
                        Some(_) => act.put(retry, deadline, attempts - 1),
                    })
                }
                other => ready(other),
            }));
        };
        let (key_hash, prefix) = match &input.api_key {
            Some(k) => (Some(hash_key(k.as_bytes())), KeyPrefix::of_key(k)),
            None => (None, current.key_prefix),
        };
        let (new_key, key) = (
            key_hash.is_some(),
            key_hash.map_or(current.key_id, |h| key_id(&h)),
        );
        if let Err(e) = self.check_ips(&input.client_id, &input.ips) {
            return ready(Err(e));
        }
        let retry = input.clone();
        let next = ClientEntry {
            id: input.client_id.into(),
            extra: ClientExtra::boxed(input.name, input.ips),
            key_id: key,
            key_prefix: prefix,
            enabled: input.enabled,
            enforce: input.enforce,
            created_at: current.created_at,
            updated_at: next_update(current.updated_at),
            cell: current.cell.clone(),
        };
        let key = input.api_key.filter(|_| new_key);
        let replaced = self.replace(next, input.quota, key_hash, current.updated_at, deadline);
        Box::pin(replaced.then(move |res, act, _| match res {
            Ok(view) => ready(Ok(Created {
                view,
                api_key: key,
                created: false,
            })),
            // Gone or changed elsewhere: re-read, then create or replace what is there.
            Err(RegistryError::NotFound) => act.reload_then(id.clone(), deadline, move |act, _| {
                if attempts == 0 {
                    return Self::busy(&id);
                }
                act.put(retry, deadline, attempts - 1)
            }),
            Err(e) => ready(Err(e)),
        }))
    }

    fn patch(&mut self, msg: PatchClient, attempts: u32) -> Pending<ClientView> {
        let Some(current) = self.table().get(&msg.client_id) else {
            // Maybe created elsewhere and not applied here yet: the database says.
            let (id, deadline) = (msg.client_id.clone(), msg.deadline);
            return self.reload_then(id.clone(), deadline, move |act, found| match found {
                None => ready(Err(RegistryError::NotFound)),
                Some(_) if attempts == 0 => Self::busy(&id),
                Some(_) => act.patch(msg, attempts - 1),
            });
        };
        let p = msg.patch.clone();
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
                return ready(Err(RegistryError::Invalid {
                    field,
                    message: e.to_string(),
                }));
            }
        };
        let (key_hash, prefix) = match &p.api_key {
            Some(k) => (Some(hash_key(k.as_bytes())), KeyPrefix::of_key(k)),
            None => (None, current.key_prefix),
        };
        let key = key_hash.map_or(current.key_id, |h| key_id(&h));
        let ips: Vec<IpNet> = p.ips.unwrap_or_else(|| current.ips().to_vec());
        let name: Option<String> = p.name.unwrap_or_else(|| current.name().map(str::to_string));
        if let Err(e) = self.check_ips(&current.id, &ips) {
            return ready(Err(e));
        }
        let next = ClientEntry {
            id: current.id.clone(),
            extra: ClientExtra::boxed(name, ips),
            key_id: key,
            key_prefix: prefix,
            enabled: p.enabled.unwrap_or(current.enabled),
            enforce: p.enforce.unwrap_or(current.enforce),
            created_at: current.created_at,
            updated_at: next_update(current.updated_at),
            cell: current.cell.clone(),
        };
        let deadline = msg.deadline;
        let replaced = self.replace(next, quota, key_hash, current.updated_at, deadline);
        Box::pin(replaced.then(move |res, act, _| match res {
            // Gone or changed elsewhere: re-read, then patch what is there (if anything).
            Err(RegistryError::NotFound) => {
                let id = msg.client_id.clone();
                act.reload_then(id.clone(), deadline, move |act, found| match found {
                    None => ready(Err(RegistryError::NotFound)),
                    Some(_) if attempts == 0 => Self::busy(&id),
                    Some(_) => act.patch(msg, attempts - 1),
                })
            }
            other => ready(other),
        }))
    }

    /// Deletes the row: the database decides whether there was one (`404` if not, whatever
    /// memory holds; memory then follows the change log).
    fn remove(&mut self, id: String, deadline: Instant) -> Pending<()> {
        let write = WriteClient {
            write: ClientWrite::Delete(id.clone()),
            at: unix_ms(),
            deadline,
        };
        Box::pin(self.db.send(write).into_actor(self).map(move |res, act, _| {
            let Some(Written { version, .. }) = flatten(res)? else {
                return Err(RegistryError::NotFound);
            };
            act.table().remove(&id);
            act.sync.applied(&id, Some(version));
            log::info!("client {id} deleted (change {version})");
            Ok(())
        }))
    }
}

/// The `updated_at` of a change to a row last written at `seen`: now, but always later than
/// `seen`, so that `updated_at` is a version a concurrent change can be checked against
/// (clocks of instances may differ, and two changes may fall in one millisecond).
fn next_update(seen: i64) -> i64 {
    unix_ms().max(seen.saturating_add(1))
}

/// Times a write that found its row changed since memory's view re-reads it and tries again.
const ATTEMPTS: u32 = 3;

impl Handler<CreateClient> for ClientRegistry {
    type Result = ResponseFuture<Result<Created, RegistryError>>;

    fn handle(&mut self, msg: CreateClient, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(ctx, move |act| act.create(msg.0, msg.1))
    }
}

impl Handler<PutClient> for ClientRegistry {
    type Result = ResponseFuture<Result<Created, RegistryError>>;

    fn handle(&mut self, msg: PutClient, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(ctx, move |act| act.put(msg.0, msg.1, ATTEMPTS))
    }
}

impl Handler<PatchClient> for ClientRegistry {
    type Result = ResponseFuture<Result<ClientView, RegistryError>>;

    fn handle(&mut self, msg: PatchClient, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(ctx, move |act| act.patch(msg, ATTEMPTS))
    }
}

impl Handler<RemoveClient> for ClientRegistry {
    type Result = ResponseFuture<Result<(), RegistryError>>;

    fn handle(&mut self, msg: RemoveClient, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(ctx, move |act| act.remove(msg.0, msg.1))
    }
}
