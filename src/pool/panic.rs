//! Panic mode (Envoy's `healthy_panic_threshold`): when too few backends are healthy, health is
//! ignored and traffic goes to every backend, because a checker that ejects most of a pool is
//! more often measuring itself (or a brief hiccup) than a pool that is really gone.

/// The routing set for the healthy flags of every backend, and whether it is a panic set.
///
/// `threshold_percent` 0 turns panic mode off. Below the threshold (healthy share strictly
/// less than it), every backend is routable.
pub fn routable(healthy: &[bool], threshold_percent: u8) -> (Vec<usize>, bool) {
    let total = healthy.len();
    let up: Vec<usize> = (0..total).filter(|&i| healthy[i]).collect();
    let panic = total > 0 && up.len() * 100 < usize::from(threshold_percent) * total;
    if panic {
        ((0..total).collect(), true)
    } else {
        (up, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        const T: bool = true;
        const F: bool = false;
        #[rustfmt::skip]
        let cases: &[(&[bool], u8, &[usize], bool)] = &[
            // healthy flags, threshold, routable, panic
            (&[T, T, T], 50, &[0, 1, 2], F),
            (&[T, F, T], 50, &[0, 2], F),
            (&[F, F, T], 50, &[0, 1, 2], T),       // 33 % < 50 %
            (&[F, F, F], 50, &[0, 1, 2], T),
            (&[T, F], 50, &[0], F),                // exactly 50 % is not below
            (&[F], 50, &[0], T),                   // a lone backend is never ejected for routing
            (&[T], 50, &[0], F),
            (&[F, F, F], 0, &[], F),               // 0 turns it off
            (&[T, T, F, F, F], 40, &[0, 1], F),    // 40 % is not below 40 %
            (&[T, F, F, F, F], 40, &[0, 1, 2, 3, 4], T),
            (&[T, T, T, F], 100, &[0, 1, 2, 3], T), // 100: any ejection panics
            (&[T, T, T], 100, &[0, 1, 2], F),
            (&[], 50, &[], F),
        ];
        for &(healthy, threshold, want, panic) in cases {
            assert_eq!(
                routable(healthy, threshold),
                (want.to_vec(), panic),
                "{healthy:?} at {threshold} %"
            );
        }
    }
}
