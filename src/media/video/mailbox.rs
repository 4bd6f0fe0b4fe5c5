//! A bounded, latest-wins hand-over from one producer thread to one consumer.
//!
//! Video is only worth showing or sending while fresh: when the consumer falls behind, the
//! oldest frames are dropped, so a slow consumer never grows memory or latency.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Holds at most `capacity` items; pushing into a full mailbox drops the oldest.
#[derive(Debug)]
pub struct Mailbox<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    dropped: u64,
    closed: bool,
}

impl<T> Mailbox<T> {
    /// An empty mailbox holding up to `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                dropped: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    /// Adds an item, dropping the oldest one when full.
    pub fn push(&self, item: T) {
        let mut state = self.lock();
        if state.items.len() == self.capacity {
            state.items.pop_front();
            state.dropped += 1;
        }
        state.items.push_back(item);
        drop(state);
        self.ready.notify_one();
    }

    /// Takes the oldest item without waiting.
    pub fn try_pop(&self) -> Option<T> {
        self.lock().items.pop_front()
    }

    /// Takes the newest item, discarding older ones (counted as dropped).
    pub fn pop_latest(&self) -> Option<T> {
        let mut state = self.lock();
        let newest = state.items.pop_back();
        let stale = state.items.len() as u64;
        state.items.clear();
        state.dropped += stale;
        newest
    }

    /// Takes the oldest item, waiting up to `timeout`; None on timeout or once closed and empty.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let state = self.lock();
        let (mut state, _) = self
            .ready
            .wait_timeout_while(state, timeout, |s| s.items.is_empty() && !s.closed)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.items.pop_front()
    }

    /// Marks the producer as gone and wakes any waiting consumer.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// True once the producer has closed the mailbox.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// How many items were discarded unread so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state stays consistent even if a holder panicked: every update is a single step.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_mailbox_drops_oldest() {
        let mailbox = Mailbox::new(2);
        for i in 0..5 {
            mailbox.push(i);
        }
        assert_eq!(mailbox.len(), 2);
        assert_eq!(mailbox.dropped(), 3);
        assert_eq!(mailbox.try_pop(), Some(3));
        assert_eq!(mailbox.try_pop(), Some(4));
        assert_eq!(mailbox.try_pop(), None);
    }

    #[test]
    fn pop_latest_discards_stale_items() {
        let mailbox = Mailbox::new(4);
        for i in 0..3 {
            mailbox.push(i);
        }
        assert_eq!(mailbox.pop_latest(), Some(2));
        assert!(mailbox.is_empty());
        assert_eq!(mailbox.dropped(), 2);
    }

    #[test]
    fn close_wakes_a_waiting_consumer() {
        let mailbox = std::sync::Arc::new(Mailbox::<u8>::new(1));
        let closer = std::sync::Arc::clone(&mailbox);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            closer.close();
        });
        let started = std::time::Instant::now();
        assert_eq!(mailbox.pop_timeout(Duration::from_secs(5)), None);
        assert!(started.elapsed() < Duration::from_secs(2));
        t.join().unwrap();
    }
}
