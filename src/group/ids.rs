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
