//! The shard's gauge of appended-but-unwritten bytes, shared by every
//! partition the shard owns.
//!
//! Owns: the count and its limit (half the shard's `--memory-budget`), the
//! wait of producers while it is over, its `/metrics` level.
//!
//! Must never: be shared across shards (`Rc`, one writer), or be left
//! holding bytes nothing will write (a partition that fails releases its
//! share).

use std::rc::Rc;
use std::sync::Arc;

use crate::metrics::ShardMetrics;
use crate::rt;

/// Bytes appended but not yet written, summed over every partition of a
/// shard, against the part of the shard's memory budget that may hold them.
/// Producers are slowed (their connection is not read) while it is over, so
/// a disk slower than the producers never makes memory grow without bound.
pub struct MemoryGauge {
    used: std::cell::Cell<u64>,
    limit: u64,
    freed: Rc<rt::Event>,
    /// Where `used` is published for `/metrics`.
    metrics: Arc<ShardMetrics>,
}

impl std::fmt::Debug for MemoryGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryGauge({} of {})", self.used.get(), self.limit)
    }
}

impl MemoryGauge {
    pub fn new(limit: u64) -> Rc<MemoryGauge> {
        Self::with_metrics(limit, ShardMetrics::detached())
    }

    /// A gauge that also publishes its level in `metrics`.
    pub fn with_metrics(limit: u64, metrics: Arc<ShardMetrics>) -> Rc<MemoryGauge> {
        metrics.memory_unwritten_limit_bytes.set(limit);
        Rc::new(MemoryGauge {
            used: Default::default(),
            limit,
            freed: Rc::default(),
            metrics,
        })
    }

    pub fn used(&self) -> u64 {
        self.used.get()
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn is_over(&self) -> bool {
        self.used.get() > self.limit
    }

    pub(crate) fn add(&self, n: u64) {
        self.used.set(self.used.get() + n);
        self.metrics.memory_unwritten_bytes.set(self.used.get());
    }

    pub(crate) fn sub(&self, n: u64) {
        let used = self.used.get();
        assert!(n <= used, "memory gauge: freeing {n} of {used} bytes");
        self.used.set(used - n);
        self.metrics.memory_unwritten_bytes.set(used - n);
        self.freed.notify_all();
    }

    /// Waits until the unwritten bytes are back under the limit (writes in
    /// flight bring them down; a failed write releases its bytes too).
    pub async fn wait_below(&self) {
        if self.is_over() {
            tracing::debug!(
                used = self.used.get(),
                limit = self.limit,
                "producer waits for memory"
            );
        }
        while self.is_over() {
            rt::any_notified(vec![self.freed.clone()]).await;
        }
    }
}
