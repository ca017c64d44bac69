//! The registered clients given series of their own in `/metrics`: the busiest `limit` by
//! requests decided since start, so that a million clients cannot make a million series.

use std::{cmp::Reverse, collections::BinaryHeap};

/// One client's counts, as the scrape reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCounts {
    /// Client id.
    pub id: String,
    /// Requests admitted since start (restored from the database at start).
    pub admitted: u64,
    /// Requests refused (or, in shadow mode, that would have been).
    pub refused: u64,
}

impl ClientCounts {
    fn busy(&self) -> u64 {
        self.admitted.saturating_add(self.refused)
    }
}

/// A kept client in the heap: busy (admitted + refused), id reversed (so that of two as busy
/// the smaller id is the greater), admitted, refused.
type Kept = Reverse<(u64, Reverse<String>, u64, u64)>;

/// The busiest clients seen so far: offered one at a time (a scan of a million clients
/// holds `limit` entries, and copies an id only when it gets in).
#[derive(Debug)]
pub struct TopClients {
    limit: usize,
    // A min-heap of the best so far: the root is the one to drop when a busier one comes.
    heap: BinaryHeap<Kept>,
}

impl TopClients {
    /// Keeps the busiest `limit`.
    pub fn new(limit: usize) -> TopClients {
        TopClients {
            limit,
            heap: BinaryHeap::with_capacity(limit.min(1 << 16) + 1),
        }
    }

    /// Offers one client; clients with no request at all are left out.
    pub fn offer(&mut self, id: &str, admitted: u64, refused: u64) {
        let busy = admitted.saturating_add(refused);
        if busy == 0 || self.limit == 0 {
            return;
        }
        if self.heap.len() == self.limit {
            // Busier, or as busy with a smaller id (ties go by id, whatever the order).
            let beats = self.heap.peek().is_some_and(|Reverse((b, Reverse(least), ..))| {
                busy > *b || (busy == *b && id < least.as_str())
            });
            if !beats {
                return;
            }
            self.heap.pop();
        }
        self.heap
            .push(Reverse((busy, Reverse(id.to_string()), admitted, refused)));
    }

    /// The kept clients, busiest first (ties by id).
    pub fn into_sorted(self) -> Vec<ClientCounts> {
        let mut out: Vec<ClientCounts> = self
            .heap
            .into_iter()
            .map(|Reverse((_, Reverse(id), admitted, refused))| ClientCounts {
                id,
                admitted,
                refused,
            })
            .collect();
        out.sort_by(|a, b| b.busy().cmp(&a.busy()).then_with(|| a.id.cmp(&b.id)));
        out
    }
}

/// The `limit` busiest of `clients`, busiest first (ties by id).
pub fn busiest<'a>(
    clients: impl IntoIterator<Item = (&'a str, u64, u64)>,
    limit: usize,
) -> Vec<ClientCounts> {
    let mut top = TopClients::new(limit);
    for (id, admitted, refused) in clients {
        top.offer(id, admitted, refused);
    }
    top.into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[ClientCounts]) -> Vec<&str> {
        v.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn keeps_the_busiest() {
        let clients = [
            ("a", 5, 0),
            ("b", 1, 1),
            ("c", 0, 9),
            ("d", 0, 0),
            ("e", 3, 3),
            ("f", 2, 0),
        ];
        let cases: &[(usize, &[&str])] = &[
            (0, &[]),
            (1, &["c"]),
            (2, &["c", "e"]),
            (3, &["c", "e", "a"]),
            (5, &["c", "e", "a", "b", "f"]),
            // Idle clients never get a series.
            (10, &["c", "e", "a", "b", "f"]),
        ];
        for &(limit, want) in cases {
            assert_eq!(
                ids(&busiest(clients.iter().copied(), limit)),
                want,
                "limit {limit}"
            );
        }
    }

    #[test]
    fn ties_go_by_id_whatever_the_order() {
        let forward = [("x", 2, 0), ("y", 1, 1), ("z", 0, 2)];
        let backward = [("z", 0, 2), ("y", 1, 1), ("x", 2, 0)];
        assert_eq!(ids(&busiest(forward.iter().copied(), 2)), ["x", "y"]);
        assert_eq!(ids(&busiest(backward.iter().copied(), 2)), ["x", "y"]);
    }

    #[test]
    fn counts_are_kept() {
        let got = busiest([("a", 7, 2)], 1);
        assert_eq!(
            got,
            vec![ClientCounts {
                id: "a".into(),
                admitted: 7,
                refused: 2
            }]
        );
    }
}
