//! Admin writes from three instances on one PostgreSQL database answer what the database
//! decided, not what the answering instance's memory held (issue 17, item 2): a create, a
//! delete and a patch of the same id on different instances, one right after the other and
//! all at once. Each answer fits one serial order of the writes; the final rows and every
//! instance's view agree; no client the database holds answers 401.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{admin_json, eventually, GatewayProcess, TestCluster, TestDb};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Delete,
    Patch,
    Put,
}

/// A client as the model knows it: absent, or present with this name.
type State = Option<String>;

/// What a write does to `state` in a serial order: its status and the state after it.
fn model(state: &State, op: Op, name: &str) -> (u16, State) {
    match (op, state) {
        (Op::Create, None) => (201, Some(name.into())),
        (Op::Create, Some(_)) => (409, state.clone()),
        (Op::Delete, Some(_)) => (204, None),
        (Op::Delete, None) => (404, None),
        (Op::Patch, Some(_)) => (200, Some(name.into())),
        (Op::Patch, None) => (404, None),
        (Op::Put, None) => (201, Some(name.into())),
        (Op::Put, Some(_)) => (200, Some(name.into())),
    }
}

fn key(id: &str) -> String {
    format!("{id}-write-race-0123456789")
}

/// Sends `op` on `id` to `gw`, setting the name `name`: the status.
async fn send(gw: &GatewayProcess, id: &str, op: Op, name: &str) -> u16 {
    let (status, body) = match op {
        Op::Create => {
            let body = json!({"client_id": id, "capacity": 1000, "rate_per_sec": 1000,
                              "api_key": key(id), "name": name});
            admin_json(gw, "POST", "/clients", Some(&body)).await
        }
        Op::Delete => admin_json(gw, "DELETE", &format!("/clients/{id}"), None).await,
        Op::Patch => {
            admin_json(
                gw,
                "PATCH",
                &format!("/clients/{id}"),
                Some(&json!({"name": name})),
            )
            .await
        }
        Op::Put => {
            let body = json!({"client_id": id, "capacity": 1000, "rate_per_sec": 1000,
                              "api_key": key(id), "name": name});
            admin_json(gw, "PUT", &format!("/clients/{id}"), Some(&body)).await
        }
    };
    if matches!(status, 200 | 201) {
        assert_eq!(body["name"], name, "{op:?} {id}: {body}");
    }
    status
}

/// The stored state of `id`.
fn stored(cluster: &TestCluster, id: &str) -> State {
    cluster.db.client_row(id).map(|r| r.name.unwrap_or_default())
}

/// Every instance shows `id` as stored (within 10 s), and a stored client's key is admitted
/// by each (never 401).
async fn views_agree(cluster: &TestCluster, id: &str) {
    let want = stored(cluster, id);
    for gw in &cluster.instances {
        eventually(
            &format!("{id} on :{} as stored ({want:?})", gw.port),
            Duration::from_secs(10),
            || async {
                let (status, view) = admin_json(gw, "GET", &format!("/clients/{id}"), None).await;
                match &want {
                    None => status == 404,
                    Some(name) => status == 200 && view["name"] == name.as_str(),
                }
            },
        )
        .await;
        if want.is_some() {
            let status = gw.status_with_key(&key(id)).await;
            assert_eq!(status, 200, "{id} is stored, :{} answered {status}", gw.port);
        }
    }
}

/// All orders of three writes.
const ORDERS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];

#[actix_web::test]
async fn admin_writes_on_three_instances_answer_what_the_database_decided() {
    let cluster = TestCluster::start(TestDb::postgres(), 3, &[], &[]).await;
    let gw = |i: usize| cluster.gw(i % 3);
    let mut tries = 0;
    let mut disagreed = Vec::new();

    // One right after the other, on different instances (the two sequences and a
    // patch): the second instance has not applied the first write yet, the database has.
    let sequences = [
        [(Op::Create, 0), (Op::Delete, 1), (Op::Create, 2)],
        [(Op::Create, 1), (Op::Delete, 0), (Op::Patch, 2)],
        [(Op::Create, 2), (Op::Patch, 0), (Op::Delete, 1)],
        [(Op::Create, 0), (Op::Put, 1), (Op::Delete, 2)],
        [(Op::Put, 1), (Op::Delete, 2), (Op::Put, 0)],
    ];
    for round in 0..4 {
        for (s, seq) in sequences.iter().enumerate() {
            let id = format!("seq{round}{s}");
            let mut state: State = None;
            for (step, (op, on)) in seq.iter().enumerate() {
                let name = format!("{round}-{s}-{step}");
                let got = send(gw(*on + round), &id, *op, &name).await;
                let (want, next) = model(&state, *op, &name);
                tries += 1;
                if got != want {
                    disagreed.push(format!(
                        "{id}: {op:?} on #{} answered {got}, the database says {want}",
                        (*on + round) % 3
                    ));
                }
                state = next;
            }
            if stored(&cluster, &id) != state {
                disagreed.push(format!(
                    "{id}: stored {:?}, serial {state:?}",
                    stored(&cluster, &id)
                ));
            }
        }
    }

    // A batch right after a delete on another instance: the id is free in the database.
    for round in 0..4 {
        let id = format!("batch{round}");
        assert_eq!(send(gw(round), &id, Op::Create, "first").await, 201);
        assert_eq!(send(gw(round + 1), &id, Op::Delete, "").await, 204);
        let items = json!([
            {"client_id": id, "capacity": 1000, "rate_per_sec": 1000, "api_key": key(&id), "name": "again"},
            {"client_id": format!("{id}-new"), "capacity": 1, "rate_per_sec": 1, "api_key": key(&format!("{id}-new"))}
        ]);
        let (status, body) = admin_json(gw(round + 2), "POST", "/clients/batch", Some(&items)).await;
        tries += 3;
        if status != 201 || stored(&cluster, &id).as_deref() != Some("again") {
            disagreed.push(format!("{id}: batch after the delete answered {status} {body}"));
        }
    }

    // All at once: three writes of one id, one per instance; some serial order of them must
    // give every answer and the stored row.
    let ops = [Op::Create, Op::Delete, Op::Patch];
    let ids = ["race0", "race1", "race2", "race3"];
    for round in 0..15usize {
        let mut groups = Vec::new();
        for (j, id) in ids.iter().enumerate() {
            let before = stored(&cluster, id);
            // A different mix each round: (round + j) picks each instance's write.
            let mix: [Op; 3] = std::array::from_fn(|i| ops[(round * (i + 1) + j + i) % 3]);
            groups.push((*id, before, mix));
        }
        let answers = join_all(groups.iter().map(|(id, _, mix)| {
            let names: Vec<String> = (0..3).map(|i| format!("{round}-{i}")).collect();
            async move {
                let sent = (0..3).map(|i| send(gw(i), id, mix[i], &names[i]));
                join_all(sent).await
            }
        }))
        .await;
        for ((id, before, mix), got) in groups.iter().zip(answers) {
            tries += 3;
            let after = stored(&cluster, id);
            let fits = ORDERS.iter().any(|order| {
                let mut state = before.clone();
                for &i in order {
                    let (want, next) = model(&state, mix[i], &format!("{round}-{i}"));
                    if got[i] != want {
                        return false;
                    }
                    state = next;
                }
                state == after
            });
            if !fits {
                disagreed.push(format!(
                    "{id} round {round}: from {before:?}, {mix:?} on #0-2 answered {got:?}, stored {after:?}"
                ));
            }
        }
    }

    for id in (0..4).flat_map(|r| (0..sequences.len()).map(move |s| format!("seq{r}{s}"))) {
        views_agree(&cluster, &id).await;
    }
    for id in ids {
        views_agree(&cluster, id).await;
    }
    for round in 0..4 {
        views_agree(&cluster, &format!("batch{round}")).await;
    }
    println!(
        "{tries} admin writes over three instances, {} answer(s) that disagreed with the database: {disagreed:#?}",
        disagreed.len()
    );
    assert!(disagreed.is_empty(), "{disagreed:#?}\n{}", cluster.logs());
}
