//! The groups' vocabulary, shared by every group module: member ids,
//! topic-partitions, and the limits on names.

use std::fmt;

/// Broker-generated (or, on join, client-chosen) member identifier.
pub type MemberId = String;

/// Longest group id, member id or client id accepted, in bytes (Kafka has no
/// bound; ours keeps keys and descriptions small).
pub const MAX_ID_BYTES: usize = 255;
/// Kafka's longest topic name.
pub const MAX_TOPIC_BYTES: usize = 249;

/// Session timeouts a classic group accepts (Kafka's
/// group.min/max.session.timeout.ms are 6 s and 30 min; the lower bound is
/// relaxed for tests and fast failover). Here, not in `classic`, because
/// the stored image (`snapshot`) checks what it reads back against the
/// same limits.
pub const CLASSIC_SESSION_TIMEOUT_MS: std::ops::RangeInclusive<u32> = 1_000..=1_800_000;
/// Members per classic group.
pub const CLASSIC_MAX_MEMBERS: usize = 1_000;
/// Bytes of a classic member's protocol metadata or of one assignment.
pub const MAX_BLOB_BYTES: usize = 1 << 20;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
