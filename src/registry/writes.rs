//! Admin writes: database first (the change and its change-log row in one transaction),
//! memory second, one at a time in arrival order.
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
    BucketCell, ClientEntry, ClientExtra, ClientRegistry, KeyId, KeyPrefix,
};
use crate::{
    ratelimit::Quota,
    store::{ClientWrite, WriteClient, Written},
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

    /// Checks that a new key (`None`: the key is unchanged) and the addresses are not another
    /// client's.
    fn check_unique(&self, id: &str, key: Option<&KeyId>, ips: &[IpNet]) -> Result<(), RegistryError> {
        let table = self.table();
        if key.is_some_and(|k| table.key_taken_by_other(k, id)) {
            return Err(RegistryError::Conflict {
                field: "api_key",
                message: "this API key belongs to another client".into(),
            });
        }
        for net in ips {
            if let Some(e) = table.by_net(net).filter(|e| &*e.id != id) {
                return Err(RegistryError::Conflict {
                    field: "ips",
                    message: format!("{net} is already registered for client {}", e.id),
                });
            }
        }
        Ok(())
    }

    /// Builds a new entry from `input`, checking uniqueness; its cell is made once the
    /// database gave the row its generation (see [`Self::insert`]).
    fn new_entry(&self, mut input: ClientInput) -> Result<(ClientEntry, Quota, String), RegistryError> {
        let key = input.api_key.take().unwrap_or_else(generate_key);
        let key_hash = hash_key(key.as_bytes());
        self.check_unique(&input.client_id, Some(&key_id(&key_hash)), &input.ips)?;
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

    /// Inserts the row of `entry`; on success publishes it with a new cell (full bucket) of
    /// the row's generation, replacing whatever this instance still held under its id (an
    /// older incarnation whose delete has not reached it yet).
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
    /// and switches to it on success.
    fn replace(
        &mut self,
        next: ClientEntry,
        quota: Quota,
        key_hash: Option<[u8; 32]>,
        deadline: Instant,
    ) -> Pending<ClientView> {
        let write = WriteClient {
            write: ClientWrite::Replace(row_of(&next, quota, key_hash.as_ref())),
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

    fn create(&mut self, input: ClientInput, deadline: Instant) -> Pending<Created> {
        if self.table().get(&input.client_id).is_some() {
            return ready(Err(RegistryError::Conflict {
                field: "client_id",
                message: format!("client {} already exists", input.client_id),
            }));
        }
        match self.new_entry(input) {
            Ok((entry, quota, key)) => self.insert(entry, quota, key, deadline),
            Err(e) => ready(Err(e)),
        }
    }

    fn put(&mut self, input: ClientInput, deadline: Instant) -> Pending<Created> {
        let Some(current) = self.table().get(&input.client_id) else {
            return match self.new_entry(input) {
                Ok((entry, quota, key)) => self.insert(entry, quota, key, deadline),
                Err(e) => ready(Err(e)),
            };
        };
        let (key_hash, prefix) = match &input.api_key {
            Some(k) => (Some(hash_key(k.as_bytes())), KeyPrefix::of_key(k)),
            None => (None, current.key_prefix),
        };
        let (new_key, key) = (
            key_hash.is_some(),
            key_hash.map_or(current.key_id, |h| key_id(&h)),
        );
        if let Err(e) = self.check_unique(
            &input.client_id,
            key_hash.map(|h| key_id(&h)).as_ref(),
            &input.ips,
        ) {
            return ready(Err(e));
        }
        let next = ClientEntry {
            id: input.client_id.into(),
            extra: ClientExtra::boxed(input.name, input.ips),
            key_id: key,
            key_prefix: prefix,
            enabled: input.enabled,
            enforce: input.enforce,
            created_at: current.created_at,
            updated_at: unix_ms(),
            cell: current.cell.clone(),
        };
        let key = input.api_key.filter(|_| new_key);
        Box::pin(
            self.replace(next, input.quota, key_hash, deadline)
                .map(move |res, _, _| {
                    res.map(|view| Created {
                        view,
                        api_key: key,
                        created: false,
                    })
                }),
        )
    }

    fn patch(&mut self, msg: PatchClient) -> Pending<ClientView> {
        let Some(current) = self.table().get(&msg.client_id) else {
            return ready(Err(RegistryError::NotFound));
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
        if let Err(e) = self.check_unique(&current.id, key_hash.map(|h| key_id(&h)).as_ref(), &ips) {
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
            updated_at: unix_ms(),
            cell: current.cell.clone(),
        };
        self.replace(next, quota, key_hash, msg.deadline)
    }

    fn remove(&mut self, id: String, deadline: Instant) -> Pending<()> {
        if self.table().get(&id).is_none() {
            return ready(Err(RegistryError::NotFound));
        }
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

impl Handler<CreateClient> for ClientRegistry {
    type Result = ResponseFuture<Result<Created, RegistryError>>;

    fn handle(&mut self, msg: CreateClient, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(ctx, move |act| act.create(msg.0, msg.1))
    }
}

impl Handler<PutClient> for ClientRegistry {
    type Result = ResponseFuture<Result<Created, RegistryError>>;

    fn handle(&mut self, msg: PutClient, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(ctx, move |act| act.put(msg.0, msg.1))
    }
}

impl Handler<PatchClient> for ClientRegistry {
    type Result = ResponseFuture<Result<ClientView, RegistryError>>;

    fn handle(&mut self, msg: PatchClient, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(ctx, move |act| act.patch(msg))
    }
}

impl Handler<RemoveClient> for ClientRegistry {
    type Result = ResponseFuture<Result<(), RegistryError>>;

    fn handle(&mut self, msg: RemoveClient, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(ctx, move |act| act.remove(msg.0, msg.1))
    }
}
