//! Queries first: passage work pauses at its next layer (AVX-512 path) or batch
//! (candle-transformers path) while a query is being embedded.
//!
//! Owns: the count of queries in flight and the wait for it to reach zero. Must not:
//! know what a query or a passage is beyond that.
//!
//! Why: a search embeds one short query (milliseconds); an ingest or a draft check
//! embeds dozens of windows (seconds). On a machine with few cores, a query that shares
//! the CPU with a passage batch used to wait for whole texts to finish (soak p99 600 ms).
//! Now queries run on their own threads, and passage threads stop between layers for as
//! long as any query runs, so a query waits for at most one layer of one window on each
//! core (a few milliseconds) and then has the CPU to itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub(crate) struct QueryGate {
    /// Queries being embedded now (read without the lock on the passages' fast path).
    active: AtomicUsize,
    lock: Mutex<()>,
    idle: Condvar,
}

/// A query's turn: passages pause until every turn is dropped.
pub(crate) struct QueryTurn<'a>(&'a QueryGate);

impl QueryGate {
    pub(crate) fn enter(&self) -> QueryTurn<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        QueryTurn(self)
    }

    /// Called by passage work between layers: returns at once unless a query runs, else
    /// when none does.
    pub(crate) fn pause_for_queries(&self) {
        if self.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.active.load(Ordering::SeqCst) > 0 {
            guard = self.idle.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for QueryTurn<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Taking the lock orders this wake-up after a passage thread's check.
            let _guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.0.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn passages_wait_while_a_query_runs_and_go_on_when_it_ends() {
        let gate = Arc::new(QueryGate::default());
        gate.pause_for_queries(); // no query: returns at once
        let turn = gate.enter();
        let passage = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.pause_for_queries())
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !passage.is_finished(),
            "the passage went on while a query ran"
        );
        let second = gate.enter();
        drop(turn);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !passage.is_finished(),
            "one of two queries ended; the passage must still wait"
        );
        drop(second);
        passage.join().unwrap();
        assert_eq!(gate.active.load(Ordering::SeqCst), 0);
    }
}
