//! Backend selection: pure functions over the routable backends of a snapshot.
//!
//! Nothing here locks or allocates per request: round robin walks a precomputed smooth
//! weighted cycle with a shared cursor, least-connections and random read the in-flight
//! counters of the backends.

use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use super::Strategy;

/// The smooth weighted round-robin cycle (nginx's algorithm) over `weights`.
///
/// The cycle has `sum(weights) / gcd(weights)` entries; backend `i` appears `weights[i] / gcd`
/// times, spread as evenly as the weights allow (1:2:3 gives `c b a c b c`, never `c c c`).
pub fn smooth_weighted_cycle(weights: &[u32]) -> Vec<usize> {
    let g = weights.iter().copied().fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / g)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        cycle.push(best);
    }
    cycle
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// What selection needs to know of one candidate backend.
pub trait Load {
    /// Requests in flight to this backend now.
    fn in_flight(&self) -> usize;
    /// Configured weight, at least 1.
    fn weight(&self) -> u32;
}

/// `a` is less loaded than `b` relative to their weights (in_flight / weight).
fn lighter<L: Load>(a: &L, b: &L) -> bool {
    (a.in_flight() as u64) * u64::from(b.weight()) < (b.in_flight() as u64) * u64::from(a.weight())
}

/// Chooses an index into `backends` among `routable` (indices), skipping those `skip` names
/// (the backends a request already tried).
///
/// `cycle` is the smooth weighted cycle over `routable` (entries index into `routable`);
/// `cursor` is shared by every caller so that the rotation is global, not per worker.
pub fn choose<L: Load>(
    strategy: Strategy,
    backends: &[L],
    routable: &[usize],
    cycle: &[usize],
    cursor: &AtomicUsize,
    skip: impl Fn(usize) -> bool,
) -> Option<usize> {
    if routable.is_empty() {
        return None;
    }
    let allowed = |i: &usize| !skip(*i);
    match strategy {
        Strategy::RoundRobin => {
            let start = cursor.fetch_add(1, Ordering::Relaxed);
            (0..cycle.len())
                .map(|k| routable[cycle[(start + k) % cycle.len()]])
                .find(allowed)
        }
        Strategy::LeastConnections => {
            // Rotate the starting point so that ties spread instead of piling on the first.
            let start = cursor.fetch_add(1, Ordering::Relaxed);
            let n = routable.len();
            let mut best: Option<usize> = None;
            for k in 0..n {
                let i = routable[(start + k) % n];
                if !allowed(&i) {
                    continue;
                }
                if best.is_none_or(|b| lighter(&backends[i], &backends[b])) {
                    best = Some(i);
                }
            }
            best
        }
        Strategy::Random => {
            let candidates = routable.iter().copied().filter(|i| allowed(i));
            let n = candidates.clone().count();
            match n {
                0 => None,
                1 => candidates.clone().next(),
                _ => {
                    let mut rng = rand::rng();
                    let a = rng.random_range(0..n);
                    let mut b = rng.random_range(0..n - 1);
                    if b >= a {
                        b += 1;
                    }
                    let a = candidates.clone().nth(a)?;
                    let b = candidates.clone().nth(b)?;
                    Some(if lighter(&backends[b], &backends[a]) { b } else { a })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct B(usize, u32);
    impl Load for B {
        fn in_flight(&self) -> usize {
            self.0
        }
        fn weight(&self) -> u32 {
            self.1
        }
    }

    fn counts(picks: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &p in picks {
            c[p] += 1;
        }
        c
    }

    fn run(
        strategy: Strategy,
        backends: &[B],
        routable: &[usize],
        n: usize,
        exclude: &[usize],
    ) -> Vec<usize> {
        let weights: Vec<u32> = routable.iter().map(|&i| backends[i].1).collect();
        let cycle = smooth_weighted_cycle(&weights);
        let cursor = AtomicUsize::new(0);
        (0..n)
            .map(|_| {
                choose(strategy, backends, routable, &cycle, &cursor, |i| {
                    exclude.contains(&i)
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn round_robin_over_three_is_exactly_even_and_in_turn() {
        let b = [B(0, 1), B(0, 1), B(0, 1)];
        let picks = run(Strategy::RoundRobin, &b, &[0, 1, 2], 300, &[]);
        assert_eq!(counts(&picks, 3), vec![100, 100, 100]);
        assert_eq!(&picks[..6], &[0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_one_two_three_are_exact_per_cycle_and_smooth() {
        let cycle = smooth_weighted_cycle(&[1, 2, 3]);
        assert_eq!(cycle, vec![2, 1, 0, 2, 1, 2]);
        let b = [B(0, 1), B(0, 2), B(0, 3)];
        let picks = run(Strategy::RoundRobin, &b, &[0, 1, 2], 600, &[]);
        for window in picks.chunks(6) {
            assert_eq!(counts(window, 3), vec![1, 2, 3]);
        }
        // Smooth: the heaviest never runs three times in a row.
        assert!(picks.windows(3).all(|w| !(w[0] == 2 && w[1] == 2 && w[2] == 2)));
    }

    #[test]
    fn cycle_is_reduced_by_the_common_divisor() {
        assert_eq!(smooth_weighted_cycle(&[10, 20]).len(), 3);
        assert_eq!(smooth_weighted_cycle(&[]), Vec::<usize>::new());
    }

    #[test]
    fn round_robin_skips_unhealthy_and_excluded() {
        let b = [B(0, 1), B(0, 1), B(0, 1)];
        let picks = run(Strategy::RoundRobin, &b, &[0, 2], 10, &[]);
        assert_eq!(counts(&picks, 3), vec![5, 0, 5]);
        let picks = run(Strategy::RoundRobin, &b, &[0, 1, 2], 10, &[1]);
        assert!(!picks.contains(&1));
        let cursor = AtomicUsize::new(0);
        let cycle = smooth_weighted_cycle(&[1, 1]);
        assert_eq!(
            choose(Strategy::RoundRobin, &b, &[0, 1], &cycle, &cursor, |i| i < 2),
            None
        );
        assert_eq!(
            choose(Strategy::RoundRobin, &b, &[], &[], &cursor, |_| false),
            None
        );
    }

    #[test]
    fn least_connections_prefers_the_idle_backend() {
        let b = [B(5, 1), B(0, 1), B(3, 1)];
        assert_eq!(
            run(Strategy::LeastConnections, &b, &[0, 1, 2], 20, &[]),
            vec![1; 20]
        );
        // Relative to weight: 4 in flight at weight 4 is lighter than 2 at weight 1.
        let b = [B(2, 1), B(4, 4)];
        assert_eq!(run(Strategy::LeastConnections, &b, &[0, 1], 5, &[]), vec![1; 5]);
        // Ties rotate.
        let b = [B(1, 1), B(1, 1)];
        assert_eq!(
            counts(&run(Strategy::LeastConnections, &b, &[0, 1], 10, &[]), 2),
            vec![5, 5]
        );
        let b = [B(5, 1), B(0, 1)];
        assert_eq!(run(Strategy::LeastConnections, &b, &[0, 1], 3, &[1]), vec![0; 3]);
    }

    #[test]
    fn random_two_choices_never_picks_the_busiest_of_three() {
        let b = [B(0, 1), B(9, 1), B(1, 1)];
        let picks = run(Strategy::Random, &b, &[0, 1, 2], 1000, &[]);
        let c = counts(&picks, 3);
        assert_eq!(c[1], 0, "{c:?}");
        // Backend 0 wins every pair it is in (2 of 3 pairs), backend 2 only the pair {1,2}.
        assert!(c[0] > 550 && c[2] > 200, "{c:?}");
        let picks = run(Strategy::Random, &b, &[0, 1, 2], 50, &[0, 2]);
        assert_eq!(picks, vec![1; 50]);
    }
}
