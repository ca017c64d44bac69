//! A fixed-capacity ring of the latest values: pushing onto a full ring drops the oldest, so
//! the memory it holds never grows after it is made.

use std::collections::VecDeque;

/// The latest `capacity` values pushed, oldest first.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    /// An empty ring that keeps `capacity` values (at least one), allocated now.
    pub fn new(capacity: usize) -> Ring<T> {
        let capacity = capacity.max(1);
        Ring {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds `value`, dropping the oldest when the ring is full.
    pub fn push(&mut self, value: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(value);
    }

    /// The newest value.
    pub fn newest(&self) -> Option<&T> {
        self.items.back()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    /// Values held now.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Values held at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_in_order() {
        let mut r = Ring::new(3);
        assert!(r.is_empty());
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(r.newest(), Some(&4));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn never_grows_after_it_is_made() {
        let mut r = Ring::new(300);
        let allocated = r.items.capacity();
        for i in 0..100_000u64 {
            r.push(i);
        }
        assert_eq!(r.items.capacity(), allocated);
        assert_eq!(r.len(), 300);
        assert_eq!(r.iter().next(), Some(&99_700));
    }
}
