//! Consumer groups: membership, partition assignment and committed offsets,
//! as pure state machines driven by explicit times (`now_ms`).
//!
//! Owns: the KIP-848-style protocol where the broker computes the assignment
//! and one heartbeat call both joins and keeps a member alive
//! (`coordinator`), the assignment strategies (`assign`), and the committed
//! offsets table with its durable record format (`offsets`); and Kafka's
//! classic protocol, where the leader's client assigns and the broker only
//! runs the join barrier and relays the assignment (`classic`), with the
//! record that keeps a classic group across a broker restart (`snapshot`).
//!
//! Must never: do I/O, read a clock, name glommio or a socket. The shard that
//! hosts a `Coordinator` feeds it requests, the current topic metadata and
//! the time, appends the offset records it returns to the internal offsets
//! log, and replays that log through `Coordinator::apply` on start.
//!
//! Usage, in brief:
//! ```
//! use std::collections::BTreeMap;
//! use shardlog::group::{Coordinator, HeartbeatRequest, Subscription};
//!
//! let mut c = Coordinator::new(7);
//! c.metadata_changed(BTreeMap::from([("orders".to_string(), 6)]));
//! let join = HeartbeatRequest::join("app", Subscription::topics(["orders"]));
//! let r = c.heartbeat("billing", 0, join).unwrap();
//! assert_eq!(r.assignment.len(), 6);
//! // Next heartbeat: report what we own now (what we were given).
//! let hb = HeartbeatRequest::beat(&r.member_id, r.member_epoch, r.assignment.clone());
//! let r = c.heartbeat("billing", 1_000, hb).unwrap();
//! assert_eq!(r.assignment.len(), 6);
//! ```

pub mod assign;
pub mod classic;
pub mod coordinator;
mod ids;
pub mod offsets;
pub mod reader;
pub mod snapshot;

pub use assign::{target_assignment, Strategy};
pub use coordinator::{
    Coordinator, ExpiryReason, Group, GroupDescription, GroupError, GroupListing, GroupState,
    HeartbeatRequest, HeartbeatResponse, MemberDescription, Subscription, TopicRegex,
};
pub use offsets::{CommittedOffset, OffsetCommit, OffsetError, OffsetKey, OffsetTable};

pub use ids::{MemberId, TopicPartition, MAX_ID_BYTES, MAX_TOPIC_BYTES};
