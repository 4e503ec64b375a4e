//! Library errors as the wires carry them: the one place each error type
//! gets its codes, native and Kafka.
//!
//! Owns: `ToWire` (partition, group and classic-group errors -> the native
//! `WireError`), `kafka_code` (native codes -> Kafka's), and
//! `kafka_classic_code` (classic-group errors -> Kafka's, which has codes
//! the native wire does not: a classic client needs them exactly).
//!
//! Must never: be bypassed: a handler that needs a code for a library
//! error asks here, so a new error variant is mapped once, for both wires.

use kafka_protocol::ResponseError;

use crate::group::classic::ClassicError;
use crate::group::GroupError;
use crate::partition::PartitionError;
use crate::producer_state::SequenceError;
use crate::protocol::{ErrorCode, WireError};

/// A library error as the native wire carries it (code and message).
pub trait ToWire {
    fn to_wire(&self) -> WireError;
}

impl ToWire for PartitionError {
    fn to_wire(&self) -> WireError {
        let code = match self {
            PartitionError::Batch(_) => ErrorCode::CorruptBatch,
            PartitionError::KeylessRecord { .. } => ErrorCode::InvalidRecord,
            PartitionError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            PartitionError::Storage(_) => ErrorCode::StorageError,
            PartitionError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            PartitionError::Empty => ErrorCode::InvalidRequest,
            PartitionError::Closed => ErrorCode::ShuttingDown,
            PartitionError::Sequence(s) => match s {
                SequenceError::OutOfOrder { .. } | SequenceError::NewEpochNotAtZero { .. } => {
                    ErrorCode::OutOfOrderSequence
                }
                SequenceError::StaleEpoch { .. } => ErrorCode::InvalidProducerEpoch,
                // Kafka's answer to a batch outside its transaction
                // (KIP-890's verification) or a forged marker.
                SequenceError::Transactional(_) => ErrorCode::InvalidTxnState,
                SequenceError::Invalid(_) => ErrorCode::InvalidRequest,
            },
        };
        WireError::new(code, self.to_string())
    }
}

impl ToWire for GroupError {
    fn to_wire(&self) -> WireError {
        let code = match self {
            GroupError::UnknownMember { .. } => ErrorCode::UnknownMember,
            GroupError::StaleMemberEpoch { .. } => ErrorCode::StaleMemberEpoch,
            GroupError::NotAssigned { .. } => ErrorCode::NotAssigned,
            GroupError::GroupNotEmpty { .. } => ErrorCode::GroupNotEmpty,
            GroupError::InconsistentStrategy { .. } => ErrorCode::InconsistentStrategy,
            GroupError::InvalidSessionTimeout { .. } => ErrorCode::InvalidSessionTimeout,
            GroupError::UnknownGroup { .. } => ErrorCode::UnknownGroup,
            GroupError::InvalidRegex { .. } => ErrorCode::InvalidRegex,
            GroupError::SubscribedToTopic { .. } => ErrorCode::GroupSubscribedToTopic,
            GroupError::Offset(crate::group::OffsetError::MetadataTooLarge { .. }) => {
                ErrorCode::MessageTooLarge
            }
            _ => ErrorCode::InvalidRequest,
        };
        WireError::new(code, self.to_string())
    }
}

impl ToWire for crate::txn::TxnError {
    fn to_wire(&self) -> WireError {
        use crate::txn::TxnError as E;
        let code = match self {
            E::InvalidRequest(_) => ErrorCode::InvalidRequest,
            E::InvalidTimeout { .. } => ErrorCode::InvalidTransactionTimeout,
            E::Concurrent(_) => ErrorCode::ConcurrentTransactions,
            E::Fenced { .. } => ErrorCode::ProducerFenced,
            E::ProducerIdMapping { .. } => ErrorCode::InvalidProducerIdMapping,
            E::InvalidState { .. } => ErrorCode::InvalidTxnState,
            E::NotFound(_) => ErrorCode::TransactionalIdNotFound,
        };
        WireError::new(code, self.to_string())
    }
}

/// Classic-protocol errors on the native wire (offset commits of classic
/// groups); the Kafka listener maps these codes back to Kafka's.
impl ToWire for crate::security::users::UsersError {
    fn to_wire(&self) -> WireError {
        use crate::security::users::UsersError as E;
        let code = match self {
            E::BadName(_) | E::Unacceptable(_) => ErrorCode::UnacceptableCredential,
            E::NoUser(_) | E::NoCredential { .. } => ErrorCode::ResourceNotFound,
            E::UnsupportedMechanism(_) => ErrorCode::UnsupportedSaslMechanism,
            E::Duplicate(_) => ErrorCode::DuplicateResource,
            E::Corrupt(_) => ErrorCode::StorageError,
        };
        WireError::new(code, self.to_string())
    }
}

impl ToWire for crate::security::sasl::SaslError {
    fn to_wire(&self) -> WireError {
        use crate::security::sasl::SaslError as E;
        let code = match self {
            E::UnsupportedMechanism(_) => ErrorCode::UnsupportedSaslMechanism,
            E::IllegalState(_) => ErrorCode::IllegalSaslState,
            E::Failed(_) => ErrorCode::SaslAuthenticationFailed,
        };
        WireError::new(code, self.to_string())
    }
}

impl ToWire for ClassicError {
    fn to_wire(&self) -> WireError {
        let code = match self {
            ClassicError::UnknownMember(_) => ErrorCode::UnknownMember,
            ClassicError::IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
            _ => ErrorCode::InvalidRequest,
        };
        WireError::new(code, self.to_string())
    }
}

/// A native wire error's Kafka code (0: none).
pub fn kafka_code(e: Option<&WireError>) -> i16 {
    let Some(e) = e else { return 0 };
    let k = match e.code {
        ErrorCode::None => return 0,
        ErrorCode::UnknownTopic | ErrorCode::UnknownPartition => {
            ResponseError::UnknownTopicOrPartition
        }
        ErrorCode::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
        ErrorCode::CorruptBatch => ResponseError::CorruptMessage,
        ErrorCode::MessageTooLarge => ResponseError::MessageTooLarge,
        ErrorCode::InvalidTopicName => ResponseError::InvalidTopicException,
        ErrorCode::StorageError => ResponseError::KafkaStorageError,
        ErrorCode::UnsupportedVersion => ResponseError::UnsupportedVersion,
        ErrorCode::InvalidRequest => ResponseError::InvalidRequest,
        ErrorCode::TopicAlreadyExists => ResponseError::TopicAlreadyExists,
        ErrorCode::InvalidPartitions => ResponseError::InvalidPartitions,
        ErrorCode::InvalidConfig => ResponseError::InvalidConfig,
        ErrorCode::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
        ErrorCode::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        ErrorCode::InvalidRecord => ResponseError::InvalidRecord,
        ErrorCode::UnknownTopicId => ResponseError::UnknownTopicId,
        ErrorCode::InvalidRegex => ResponseError::InvalidRegularExpression,
        // A stopping shard: retriable, the client reconnects and retries.
        ErrorCode::ShuttingDown => ResponseError::NotLeaderOrFollower,
        // Offset commits.
        ErrorCode::UnknownMember | ErrorCode::GroupNotEmpty => ResponseError::UnknownMemberId,
        // A KIP-848 member's commit with an epoch the coordinator moved
        // past (clients refresh it and retry); a classic member's stale
        // generation is ILLEGAL_GENERATION (the client rejoins).
        ErrorCode::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        ErrorCode::IllegalGeneration => ResponseError::IllegalGeneration,
        ErrorCode::UnknownGroup => ResponseError::GroupIdNotFound,
        ErrorCode::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        ErrorCode::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator => ResponseError::NotCoordinator,
        ErrorCode::OperationNotAttempted => ResponseError::OperationNotAttempted,
        ErrorCode::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        ErrorCode::ProducerFenced => ResponseError::ProducerFenced,
        ErrorCode::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        ErrorCode::InvalidTxnState => ResponseError::InvalidTxnState,
        ErrorCode::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        ErrorCode::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        ErrorCode::UnsupportedSaslMechanism => ResponseError::UnsupportedSaslMechanism,
        ErrorCode::ResourceNotFound => ResponseError::ResourceNotFound,
        ErrorCode::DuplicateResource => ResponseError::DuplicateResource,
        ErrorCode::UnacceptableCredential => ResponseError::UnacceptableCredential,
        ErrorCode::SaslAuthenticationFailed => ResponseError::SaslAuthenticationFailed,
        ErrorCode::IllegalSaslState => ResponseError::IllegalSaslState,
        ErrorCode::TopicAuthorizationFailed => ResponseError::TopicAuthorizationFailed,
        ErrorCode::GroupAuthorizationFailed => ResponseError::GroupAuthorizationFailed,
        ErrorCode::ClusterAuthorizationFailed => ResponseError::ClusterAuthorizationFailed,
        ErrorCode::TransactionalIdAuthorizationFailed => {
            ResponseError::TransactionalIdAuthorizationFailed
        }
        ErrorCode::SecurityDisabled => ResponseError::SecurityDisabled,
        _ => ResponseError::UnknownServerError,
    };
    k.code()
}

/// Kafka's code for an error of a KIP-848 consumer-group call
/// (ConsumerGroupHeartbeat, ConsumerGroupDescribe): the new protocol has
/// its own names for a fenced epoch and a refused assignor.
pub fn kafka_consumer_group_code(e: Option<&WireError>) -> i16 {
    let Some(e) = e else { return 0 };
    let k = match e.code {
        ErrorCode::StaleMemberEpoch => ResponseError::FencedMemberEpoch,
        ErrorCode::UnknownMember => ResponseError::UnknownMemberId,
        ErrorCode::InconsistentStrategy => ResponseError::UnsupportedAssignor,
        ErrorCode::UnknownGroup => ResponseError::GroupIdNotFound,
        _ => return kafka_code(Some(e)),
    };
    k.code()
}

/// Kafka's code for a classic-protocol error (0: none).
pub fn kafka_classic_code(e: Option<&ClassicError>) -> i16 {
    let Some(e) = e else { return 0 };
    match e {
        ClassicError::UnknownMember(_) => ResponseError::UnknownMemberId,
        ClassicError::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        ClassicError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        ClassicError::InconsistentProtocol(_) => ResponseError::InconsistentGroupProtocol,
        ClassicError::MemberIdRequired => ResponseError::MemberIdRequired,
        ClassicError::InvalidSessionTimeout(_) => ResponseError::InvalidSessionTimeout,
        ClassicError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        ClassicError::InvalidGroupId(_) => ResponseError::InvalidGroupId,
        ClassicError::TooManyGroups => ResponseError::CoordinatorNotAvailable,
        ClassicError::InvalidRequest(_) => ResponseError::InvalidRequest,
        ClassicError::CoordinatorUnavailable => ResponseError::CoordinatorNotAvailable,
        ClassicError::FencedInstance(_) => ResponseError::FencedInstanceId,
    }
    .code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_errors_map_to_kafka_codes() {
        assert_eq!(kafka_classic_code(None), 0);
        assert_eq!(
            kafka_classic_code(Some(&ClassicError::MemberIdRequired)),
            79
        );
        assert_eq!(
            kafka_classic_code(Some(&ClassicError::RebalanceInProgress)),
            27
        );
        assert_eq!(
            kafka_classic_code(Some(&ClassicError::IllegalGeneration {
                given: 1,
                current: 2
            })),
            22
        );
        assert_eq!(
            kafka_classic_code(Some(&ClassicError::UnknownMember("m".into()))),
            25
        );
    }
}
