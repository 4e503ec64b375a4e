//! Kafka transactions (KIP-98), the coordinator's side: pure.
//!
//! `coordinator.rs`: the state machine of every transactional id a shard
//! coordinates (Kafka's `TransactionMetadata` transitions: InitProducerId
//! with its epoch bumps and fencing, AddPartitionsToTxn, EndTxn, the
//! timeout abort, expiry); `log.rs`: the record format of its log, the
//! `__transaction_state` topic.
//!
//! Must never: do I/O or read a clock (times are arguments); every change
//! is a transition the caller makes durable before applying it.

pub mod coordinator;
pub mod log;

pub use coordinator::{Outcome, TxnCoordinator, TxnError, TxnMeta, TxnState, TxnStep};
pub use log::TxnLogError;
