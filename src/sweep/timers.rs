//! The deadlines of one worker: a slab of entries, each a deadline and the task to wake when
//! it passes. Pure: the caller says what time it is.
//!
//! A sweep scans every live entry: live entries are the worker's open connections and the
//! waits in progress, so a scan every tick costs far less than a timer armed per request.

use std::{task::Waker, time::Instant};

use slab::Slab;

/// One deadline.
#[derive(Debug)]
struct Entry {
    at: Instant,
    waker: Option<Waker>,
    fired: bool,
}

/// The deadlines of one worker, addressed by the key [`Timers::insert`] returned.
///
/// A key is valid until its holder removes it; only the holder removes it, so a key is never
/// reused behind its holder's back.
#[derive(Debug, Default)]
pub struct Timers {
    entries: Slab<Entry>,
}

impl Timers {
    /// No deadlines.
    pub const fn new() -> Timers {
        Timers { entries: Slab::new() }
    }

    /// Adds a deadline at `at`, not yet fired.
    pub fn insert(&mut self, at: Instant) -> usize {
        self.entries.insert(Entry {
            at,
            waker: None,
            fired: false,
        })
    }

    /// Moves deadline `key` to `at`; a fired one is armed again.
    pub fn set(&mut self, key: usize, at: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.at = at;
            e.fired = false;
        }
    }

    /// Removes deadline `key`.
    pub fn remove(&mut self, key: usize) {
        self.entries.try_remove(key);
    }

    /// Whether deadline `key` has fired; if not, `waker` is woken when it does.
    pub fn poll(&mut self, key: usize, waker: &Waker) -> bool {
        let Some(e) = self.entries.get_mut(key) else {
            // Not the holder's key any more: treat it as passed rather than wait forever.
            return true;
        };
        if !e.fired && !e.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            e.waker = Some(waker.clone());
        }
        e.fired
    }

    /// Whether deadline `key` has fired.
    pub fn fired(&self, key: usize) -> bool {
        self.entries.get(key).is_none_or(|e| e.fired)
    }

    /// Fires every deadline at or before `now`, handing their wakers to `woken`.
    pub fn expire(&mut self, now: Instant, woken: &mut Vec<Waker>) {
        for (_, e) in self.entries.iter_mut() {
            if !e.fired && e.at <= now {
                e.fired = true;
                woken.extend(e.waker.take());
            }
        }
    }

    /// How many deadlines are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no deadline is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        task::Wake,
        time::Duration,
    };

    use super::*;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn deadlines_fire_at_or_after_their_time_never_before() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // (deadline offset, sweep offset, fired)
        let cases = [
            (ms(100), ms(0), false),
            (ms(100), ms(99), false),
            (ms(100), ms(100), true),
            (ms(100), ms(250), true),
            (ms(0), ms(0), true),
        ];
        for (at, now, fired) in cases {
            let mut timers = Timers::new();
            let (count, waker) = counter();
            let key = timers.insert(t0 + at);
            assert!(!timers.poll(key, &waker));
            let mut woken = Vec::new();
            timers.expire(t0 + now, &mut woken);
            woken.into_iter().for_each(Waker::wake);
            assert_eq!(timers.fired(key), fired, "deadline {at:?}, sweep at {now:?}");
            assert_eq!(count.0.load(Ordering::SeqCst), usize::from(fired));
        }
    }

    #[test]
    fn a_moved_deadline_is_armed_again_and_a_removed_one_is_gone() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut timers = Timers::new();
        let (count, waker) = counter();
        let key = timers.insert(t0 + s(1));
        let other = timers.insert(t0 + s(1));
        timers.poll(key, &waker);
        let mut woken = Vec::new();
        timers.expire(t0 + s(1), &mut woken);
        assert!(timers.fired(key));
        // Fired once: the waker is handed over once, not again on the next sweep.
        timers.expire(t0 + s(2), &mut woken);
        assert_eq!(woken.len(), 1);
        timers.set(key, t0 + s(5));
        assert!(!timers.poll(key, &waker));
        timers.expire(t0 + s(4), &mut woken);
        assert!(!timers.fired(key));
        timers.expire(t0 + s(5), &mut woken);
        assert!(timers.fired(key));
        woken.into_iter().for_each(Waker::wake);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        timers.remove(other);
        timers.remove(key);
        assert!(timers.is_empty());
    }

    #[test]
    fn the_waker_of_the_last_poll_is_the_one_woken() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let (first, w1) = counter();
        let (second, w2) = counter();
        let key = timers.insert(t0);
        timers.poll(key, &w1);
        timers.poll(key, &w2);
        let mut woken = Vec::new();
        timers.expire(t0, &mut woken);
        woken.into_iter().for_each(Waker::wake);
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }
}
