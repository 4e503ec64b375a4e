//! shardlog: a Kafka-style log broker for one Linux host, thread-per-core on
//! io_uring. See ARCHITECTURE.md for the codemap and the layering; modules
//! are listed here from the top floor down.

#[cfg(test)]
mod alloc_count;
// Test builds count every allocation per thread (the fuzz targets assert
// bounds on what a decoder allocates).
#[cfg(test)]
#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

pub mod batch;
pub mod cache;
pub mod chain;
pub mod client;
pub mod config;
pub(crate) mod conn;
pub(crate) mod coordinator_host;
pub(crate) mod errors;
pub mod group;
pub mod http;
pub mod kafka;
pub(crate) mod memory;
pub mod metrics;
pub(crate) mod native;
pub mod partition;
pub(crate) mod procstat;
pub(crate) mod producer_state;
pub mod protocol;
pub(crate) mod router;
pub mod rt;
pub mod security;
pub mod server;
pub(crate) mod shard;
pub mod storage;
pub mod tls;
pub mod top;
pub mod txn;
pub(crate) mod txn_host;
