//! Bulk creation of clients: one database transaction for the whole batch (all or nothing,
//! with one change row per client), queued with the other admin writes, then one
//! republication of the address index, so that 10,000 clients cost one rebuild, not 10,000.

use std::{fmt, sync::Arc};

use actix::{fut, ActorFutureExt, Context, Handler, Message, ResponseActFuture, ResponseFuture, WrapFuture};
use ipnet::IpNet;

use super::{
    hash_key,
    messages::{ClientInput, ClientView, Created, RegistryError},
    rows::{row_of, unix_ms},
    writes::generate_key,
    BucketCell, ClientEntry, ClientRegistry, ClientTable,
};
use crate::store::{InsertClients, StoreError, Written};

/// Create every client of the batch, or none. The inputs are validated, with no id, key or
/// address repeated within the batch (the admin API checks that).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Created>, BatchError>")]
pub struct CreateClients(pub Vec<ClientInput>, pub std::time::Instant);

/// One item of a batch that collides with a registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemProblem {
    /// Position in the batch, from 0.
    pub index: usize,
    /// The field that collides.
    pub field: &'static str,
    /// With what.
    pub message: String,
}

impl fmt::Display for ItemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "items[{}].{}: {}", self.index, self.field, self.message)
    }
}

/// Why a batch was refused; nothing was created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// Ids, API keys or addresses of the batch belong to registered clients.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Taken(Vec<ItemProblem>),
    /// The database refused a unique value another writer stored meanwhile.
    #[error("an id or API key of the batch was taken meanwhile: {0}")]
    Raced(String),
    /// The database did not take the write.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

/// The items of `batch` (id, key hash, addresses) that collide with clients of `table`.
pub fn taken<'a>(
    table: &ClientTable,
    batch: impl IntoIterator<Item = (&'a str, &'a [u8; 32], &'a [IpNet])>,
) -> Vec<ItemProblem> {
    let mut problems = Vec::new();
    for (index, (id, key_hash, ips)) in batch.into_iter().enumerate() {
        if table.get(id).is_some() {
            problems.push(ItemProblem {
                index,
                field: "client_id",
                message: format!("client {id} already exists"),
            });
        }
        if table.with_key(key_hash, |_| ()).is_some() {
            problems.push(ItemProblem {
                index,
                field: "api_key",
                message: "this API key belongs to another client".into(),
            });
        }
        if let Some((net, owner)) = ips.iter().find_map(|n| table.by_net(n).map(|o| (n, o))) {
            problems.push(ItemProblem {
                index,
                field: "ips",
                message: format!("{net} is already registered for client {}", owner.id),
            });
        }
    }
    problems
}

type Batch = ResponseActFuture<ClientRegistry, Result<Vec<Created>, BatchError>>;

impl ClientRegistry {
    /// Checks the batch against the table as the writes before it left it, then writes it.
    /// Memory may be behind the database (a client deleted on another instance): what it
    /// finds taken is re-read from the database first (`verified`), and only what is still
    /// taken then is refused. What memory misses, the database refuses (`Raced`).
    fn create_batch(
        &mut self,
        inputs: Vec<ClientInput>,
        deadline: std::time::Instant,
        verified: bool,
    ) -> Batch {
        let (now, now_ms) = (self.now(), unix_ms());
        let prepared: Vec<(ClientInput, String, [u8; 32])> = inputs
            .into_iter()
            .map(|input| {
                let key = input.api_key.clone().unwrap_or_else(generate_key);
                let hash = hash_key(key.as_bytes());
                (input, key, hash)
            })
            .collect();
        let problems = taken(
            self.table(),
            prepared
                .iter()
                .map(|(i, _, h)| (i.client_id.as_str(), h, i.ips.as_slice())),
        );
        if !problems.is_empty() && verified {
            return Box::pin(fut::ready(Err(BatchError::Taken(problems))));
        }
        if !problems.is_empty() {
            // The clients memory says hold the colliding ids, keys and addresses.
            let table = self.table();
            let mut owners: Vec<String> = problems
                .iter()
                .filter_map(|p| {
                    let (input, _, hash) = &prepared[p.index];
                    match p.field {
                        "client_id" => Some(input.client_id.clone()),
                        "api_key" => table.with_key(hash, |e| e.id.to_string()),
                        _ => input
                            .ips
                            .iter()
                            .find_map(|n| table.by_net(n))
                            .map(|e| e.id.to_string()),
                    }
                })
                .collect();
            owners.sort_unstable();
            owners.dedup();
            let inputs: Vec<ClientInput> = prepared.into_iter().map(|(i, _, _)| i).collect();
            return Box::pin(self.reload(owners, deadline).then(move |res, act, _| match res {
                Ok(()) => act.create_batch(inputs, deadline, true),
                Err(RegistryError::Unavailable(e)) => Box::pin(fut::ready(Err(BatchError::Unavailable(e)))),
                Err(e) => Box::pin(fut::ready(Err(BatchError::Unavailable(e.to_string())))),
            }));
        }
        let mut rows = Vec::with_capacity(prepared.len());
        let mut created = Vec::with_capacity(prepared.len());
        for (input, key, key_hash) in prepared {
            let quota = input.quota;
            let bucket = self.shared.share.scope().fresh_bucket(quota, now);
            // Its cell is made once the database gave the rows their generation.
            let entry = ClientEntry::created(input, &key, key_hash, bucket, now_ms, 0);
            rows.push(row_of(&entry, quota, Some(&key_hash)));
            created.push((entry, quota, key));
        }
        Box::pin(
            self.db
                .send(InsertClients(rows, deadline))
                .into_actor(self)
                .map(move |res, act, _| {
                    let Written { version, generation } = match res {
                        Ok(Ok(w)) => w,
                        Ok(Err(StoreError::Conflict { message, .. })) => {
                            return Err(BatchError::Raced(message))
                        }
                        Ok(Err(e)) => return Err(BatchError::Unavailable(e.to_string())),
                        Err(e) => return Err(BatchError::Unavailable(e.to_string())),
                    };
                    let (now, scope) = (act.now(), act.shared.share.scope());
                    let created: Vec<(Arc<ClientEntry>, String)> = created
                        .into_iter()
                        .map(|(e, quota, key)| {
                            let bucket = scope.fresh_bucket(quota, now);
                            let cell = Arc::new(BucketCell::new(bucket, 0, 0, generation));
                            (Arc::new(ClientEntry { cell, ..e }), key)
                        })
                        .collect();
                    let entries: Vec<Arc<ClientEntry>> = created.iter().map(|(e, _)| e.clone()).collect();
                    act.table().insert_many(&entries);
                    for e in &entries {
                        act.sync.applied(&e.id, Some(version));
                    }
                    log::info!(
                        "{} client(s) created in one batch (changes up to {version})",
                        created.len()
                    );
                    Ok(created
                        .into_iter()
                        .map(|(e, key)| Created {
                            view: ClientView::of(&e, now, scope),
                            api_key: Some(key),
                            created: true,
                        })
                        .collect())
                }),
        )
    }
}

impl Handler<CreateClients> for ClientRegistry {
    type Result = ResponseFuture<Result<Vec<Created>, BatchError>>;

    fn handle(&mut self, msg: CreateClients, ctx: &mut Context<Self>) -> Self::Result {
        let (inputs, deadline) = (msg.0, msg.1);
        self.enqueue_with(
            ctx,
            move |act| act.create_batch(inputs, deadline, false),
            || Err(BatchError::Unavailable("the client registry stopped".into())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, key: &str, ips: &[&str]) -> Arc<ClientEntry> {
        ClientEntry::sample(id, key.as_bytes(), ips)
    }

    #[test]
    fn each_colliding_item_is_named_by_index_and_field() {
        let table = ClientTable::build([entry("a", "key-a", &["10.0.0.0/8"]), entry("b", "key-b", &[])]);
        let net = |s: &str| -> Vec<IpNet> { vec![s.parse().unwrap()] };
        let batch: Vec<(String, [u8; 32], Vec<IpNet>)> = vec![
            ("new1".into(), hash_key(b"k1"), vec![]),
            ("a".into(), hash_key(b"k2"), vec![]),
            ("new2".into(), hash_key(b"key-b"), vec![]),
            ("new3".into(), hash_key(b"k3"), net("10.0.0.0/8")),
            ("new4".into(), hash_key(b"k4"), net("10.0.0.0/16")),
        ];
        let problems = taken(
            &table,
            batch.iter().map(|(i, h, n)| (i.as_str(), h, n.as_slice())),
        );
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "items[1].client_id: client a already exists",
                "items[2].api_key: this API key belongs to another client",
                "items[3].ips: 10.0.0.0/8 is already registered for client a",
            ]
        );
    }
}
