//! The batch cache: each partition's recently appended batches kept in
//! memory as the `Bytes` they arrived in (a slice of the produce request,
//! behind a 16-byte prefix holding the offset the partition gave them), so
//! a fetch at or above the cache's start is served with no disk read and no
//! copy: a caught-up consumer never touches the disk.
//!
//! Owns: each partition's entries (contiguous offsets, oldest first), the
//! shard-wide limit they share (`CacheBudget`), eviction (oldest first from
//! the partition holding the most: a busy partition cannot starve a quiet
//! one of its recent batches), and the cache's `/metrics`.
//!
//! Must never: serve past the end the caller says is visible (the high
//! watermark), hold a gap (an insert that does not continue the entries
//! starts them over), or be shared across shards (`Rc`, one thread).
//!
//! What it pins: an entry keeps the produce request's buffer alive, which
//! may hold other partitions' batches too; the limit counts batch bytes, so
//! the memory held can exceed it by the requests' other parts while
//! entries of the same request live in different partitions.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use bytes::Bytes;

use crate::chain::Chain;
use crate::metrics::ShardMetrics;

/// One stored batch: `prefix` then `rest` are its bytes as the log holds them.
struct Entry {
    base: i64,
    /// One past the batch's last offset.
    next: i64,
    prefix: Bytes,
    rest: Bytes,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.prefix.len() + self.rest.len()
    }
}

#[derive(Default)]
struct Entries {
    queue: VecDeque<Entry>,
    bytes: usize,
}

/// The shard's limit on cached bytes, shared by every partition it owns.
pub struct CacheBudget {
    limit: usize,
    used: Cell<usize>,
    caches: RefCell<Vec<Weak<RefCell<Entries>>>>,
    metrics: Arc<ShardMetrics>,
}

impl std::fmt::Debug for CacheBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheBudget({} of {})", self.used.get(), self.limit)
    }
}

impl CacheBudget {
    /// `limit` 0 turns caching off: every read goes to the disk.
    pub fn new(limit: usize, metrics: Arc<ShardMetrics>) -> Rc<CacheBudget> {
        metrics.cache_limit_bytes.set(limit as u64);
        Rc::new(CacheBudget {
            limit,
            used: Cell::new(0),
            caches: RefCell::default(),
            metrics,
        })
    }

    pub fn used(&self) -> usize {
        self.used.get()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn grew(&self, n: usize) {
        self.used.set(self.used.get() + n);
        self.metrics.cache_bytes.set(self.used.get() as u64);
    }

    fn shrank(&self, n: usize) {
        let used = self.used.get();
        assert!(n <= used, "batch cache: releasing {n} of {used} bytes");
        self.used.set(used - n);
        self.metrics.cache_bytes.set((used - n) as u64);
    }

    /// Evicts until the shard is back under its limit, with some room to
    /// spare so the next inserts do not evict one batch each: oldest batches
    /// first, from whichever partition holds the most.
    fn make_room(&self) {
        if self.used.get() <= self.limit {
            return;
        }
        let low_water = self.limit - self.limit / 16;
        let mut caches = self.caches.borrow_mut();
        caches.retain(|w| w.strong_count() > 0);
        while self.used.get() > low_water {
            let Some(largest) = caches
                .iter()
                .filter_map(Weak::upgrade)
                .max_by_key(|c| c.borrow().bytes)
            else {
                return;
            };
            let mut e = largest.borrow_mut();
            let Some(old) = e.queue.pop_front() else {
                return; // nothing cached anywhere: `used` is already 0
            };
            let n = old.bytes();
            e.bytes -= n;
            self.shrank(n);
            self.metrics.cache_evicted_batches.add(1);
            self.metrics.cache_evicted_bytes.add(n as u64);
        }
    }
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Whole batches from the one holding the offset.
    Hit(Chain),
    /// The offset is below what the cache holds (or it holds nothing).
    Miss,
}

/// One partition's cached batches.
pub struct BatchCache {
    entries: Rc<RefCell<Entries>>,
    budget: Rc<CacheBudget>,
}

impl BatchCache {
    pub fn new(budget: Rc<CacheBudget>) -> BatchCache {
        let entries = Rc::new(RefCell::new(Entries::default()));
        budget.caches.borrow_mut().push(Rc::downgrade(&entries));
        BatchCache { entries, budget }
    }

    /// Keeps the batch [base, next) whose stored bytes are `prefix` then
    /// `rest`. A batch that does not continue the cached ones (the cache
    /// was emptied, or the log was cut) starts the entries over.
    pub fn insert(&self, base: i64, next: i64, prefix: Bytes, rest: Bytes) {
        assert!(base < next, "a batch holds an offset");
        if self.budget.limit == 0 {
            return;
        }
        {
            let mut e = self.entries.borrow_mut();
            if e.queue.back().is_some_and(|last| last.next != base) {
                drop(e);
                self.clear();
                e = self.entries.borrow_mut();
            }
            let entry = Entry {
                base,
                next,
                prefix,
                rest,
            };
            let n = entry.bytes();
            e.queue.push_back(entry);
            e.bytes += n;
            self.budget.grew(n);
        }
        self.budget.make_room();
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (at
    /// least one), none ending past `visible_end`. A miss when `offset` is
    /// below the first cached batch or not below the last cached offset.
    pub fn read(&self, offset: i64, visible_end: i64, max_bytes: usize) -> Lookup {
        let e = self.entries.borrow();
        let i = e.queue.partition_point(|x| x.next <= offset);
        let hit = e
            .queue
            .get(i)
            .is_some_and(|x| x.base <= offset && x.next <= visible_end);
        if !hit {
            self.budget.metrics.cache_misses.add(1);
            return Lookup::Miss;
        }
        let mut out = Chain::with_capacity(8);
        for x in e.queue.range(i..) {
            if x.next > visible_end || (!out.is_empty() && out.len() + x.bytes() > max_bytes) {
                break;
            }
            out.push(x.prefix.clone());
            out.push(x.rest.clone());
        }
        debug_assert!(!out.is_empty());
        self.budget.metrics.cache_hits.add(1);
        Lookup::Hit(out)
    }

    /// Drops the batches that end at or below `offset` (retention moved the
    /// log's start).
    pub fn trim_below(&self, offset: i64) {
        let mut e = self.entries.borrow_mut();
        while e.queue.front().is_some_and(|x| x.next <= offset) {
            let x = e.queue.pop_front().expect("front checked");
            e.bytes -= x.bytes();
            self.budget.shrank(x.bytes());
        }
    }

    pub fn clear(&self) {
        let mut e = self.entries.borrow_mut();
        let n = std::mem::take(&mut e.bytes);
        e.queue.clear();
        self.budget.shrank(n);
    }

    /// Offsets [first, next) the cache holds, if any.
    pub fn range(&self) -> Option<(i64, i64)> {
        let e = self.entries.borrow();
        Some((e.queue.front()?.base, e.queue.back()?.next))
    }

    pub fn bytes(&self) -> usize {
        self.entries.borrow().bytes
    }
}

impl Drop for BatchCache {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> Rc<CacheBudget> {
        CacheBudget::new(limit, Arc::new(ShardMetrics::new(0, true)))
    }

    /// A fake batch of `n` bytes for offsets [base, next): its bytes say
    /// which batch it is.
    fn put(c: &BatchCache, base: i64, next: i64, n: usize) {
        let prefix = Bytes::from(vec![base as u8; 16]);
        let rest = Bytes::from(vec![next as u8; n - 16]);
        c.insert(base, next, prefix, rest);
    }

    fn batches_of(l: Lookup) -> Vec<u8> {
        match l {
            Lookup::Hit(c) => c.to_bytes().chunks(100).map(|b| b[0]).collect(),
            Lookup::Miss => vec![],
        }
    }

    #[test]
    fn reads_start_at_the_batch_holding_the_offset_and_stop_at_the_visible_end() {
        let b = budget(1 << 20);
        let c = BatchCache::new(b.clone());
        put(&c, 10, 15, 100);
        put(&c, 15, 16, 100);
        put(&c, 16, 20, 100);
        assert_eq!(batches_of(c.read(12, 20, 1 << 20)), vec![10, 15, 16]);
        assert_eq!(batches_of(c.read(15, 20, 1 << 20)), vec![15, 16]);
        // Only what is visible: the last batch is not flushed yet.
        assert_eq!(batches_of(c.read(10, 16, 1 << 20)), vec![10, 15]);
        // max_bytes cuts at batch bounds, but one batch always comes.
        assert_eq!(batches_of(c.read(10, 20, 250)), vec![10, 15]);
        assert_eq!(batches_of(c.read(10, 20, 1)), vec![10]);
        // Below the cache and at its end: misses (the disk answers).
        assert_eq!(c.read(9, 20, 1 << 20), Lookup::Miss);
        assert_eq!(c.read(20, 20, 1 << 20), Lookup::Miss);
        // The first batch is not visible: nothing to serve from here.
        assert_eq!(c.read(16, 16, 1 << 20), Lookup::Miss);
        assert_eq!(b.metrics.cache_hits.get(), 5);
        assert_eq!(b.metrics.cache_misses.get(), 3);
        assert_eq!(c.range(), Some((10, 20)));
    }

    #[test]
    fn the_oldest_batches_of_the_largest_partition_go_first() {
        let b = budget(1000);
        let busy = BatchCache::new(b.clone());
        let quiet = BatchCache::new(b.clone());
        put(&quiet, 0, 1, 200);
        for i in 0..8 {
            put(&busy, i, i + 1, 100);
        }
        assert_eq!(b.used(), 1000);
        put(&busy, 8, 9, 100); // over: evict down to 1000 - 1000/16
        assert!(b.used() <= 1000 - 1000 / 16, "{}", b.used());
        assert_eq!(
            quiet.range(),
            Some((0, 1)),
            "the quiet partition keeps its batch"
        );
        assert_eq!(busy.range(), Some((2, 9)), "the busy one lost its oldest");
        assert_eq!(b.metrics.cache_evicted_batches.get(), 2);
        assert_eq!(b.used(), busy.bytes() + quiet.bytes());
        // However long the busy one goes on, the quiet one keeps its share.
        for i in 9..100 {
            put(&busy, i, i + 1, 100);
            assert!(b.used() <= 1000);
        }
        assert_eq!(quiet.range(), Some((0, 1)));
        assert_eq!(busy.range().map(|r| r.1), Some(100));
    }

    #[test]
    fn a_gap_starts_over_and_dropping_a_cache_returns_its_bytes() {
        let b = budget(1 << 20);
        let c = BatchCache::new(b.clone());
        put(&c, 0, 5, 100);
        put(&c, 7, 8, 100); // not 5: the log was cut, or the cache emptied
        assert_eq!(c.range(), Some((7, 8)));
        assert_eq!(b.used(), 100);
        c.trim_below(8);
        assert_eq!((c.range(), b.used()), (None, 0));
        put(&c, 8, 9, 100);
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_zero_limit_caches_nothing() {
        let b = budget(0);
        let c = BatchCache::new(b.clone());
        put(&c, 0, 1, 100);
        assert_eq!((c.read(0, 1, 100), b.used()), (Lookup::Miss, 0));
    }
}
