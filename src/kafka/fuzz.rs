//! Test builds only: the Kafka listener's decoder fuzz target. For every
//! API and version the listener offers, seeds are encoded with the crate
//! from requests like those real clients send, then mutated as a hostile
//! client would (bit flips, truncations, lying counts and lengths, random
//! api key and version, spliced frames, tagged-field floods). Every input
//! must decode or give an error, and none may make the decoder allocate
//! more than `alloc_bound` (checked with the counting allocator of
//! `crate::alloc_count`). CI runs it with 20,000 cases (`cargo test --lib
//! fuzz_`); `fuzz/` runs the same decoders under libFuzzer for longer.
//!
//! Must never: run outside `cfg(test)`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;
use proptest::sample::Index;

use super::codec::tests::decode;
use super::codec::{self, all_supported};
use crate::alloc_count::{decode_bound as alloc_bound, peak_bytes};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn group(v: &str) -> GroupId {
    GroupId(s(v))
}

/// A record batch as a producer sends it (3 records, keys and a header).
fn batch() -> Bytes {
    let mut b = crate::batch::BatchBuilder::new(1_700_000_000_000);
    for i in 0..3u8 {
        b.push(
            1_700_000_000_000 + i as i64,
            Some(&[b'k', i][..]),
            Some(&[b'v'; 40][..]),
            &[crate::batch::Header {
                key: Bytes::from_static(b"h"),
                value: Some(Bytes::from_static(b"x")),
            }],
        );
    }
    b.finish()
}

/// Consumer-protocol bytes as a Java or librdkafka group leader sends them.
fn assignment_bytes() -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        consumer_protocol_assignment::TopicPartition::default()
            .with_topic(topic("events"))
            .with_partitions(vec![0, 1, 2]),
    ]);
    let mut b = BytesMut::new();
    b.extend_from_slice(&1i16.to_be_bytes());
    a.encode(&mut b, 1).expect("encodes");
    b.freeze()
}

fn subscription_bytes() -> Bytes {
    let sub = ConsumerProtocolSubscription::default().with_topics(vec![s("events"), s("audit")]);
    let mut b = BytesMut::new();
    b.extend_from_slice(&1i16.to_be_bytes());
    sub.encode(&mut b, 1).expect("encodes");
    b.freeze()
}

/// The request body for `api` at `version`, populated as a client would
/// send it; `None` when the populated message does not encode at that
/// version (a field that version lacks), so the caller falls back to the
/// default message.
fn populated(api: ApiKey, v: i16) -> Option<Bytes> {
    let body = |m: &dyn Fn(&mut BytesMut) -> anyhow::Result<()>| {
        let mut b = BytesMut::new();
        m(&mut b).ok().map(|()| b.freeze())
    };
    match api {
        ApiKey::Produce => {
            // A transactional producer's request: from v12 its batch
            // headers are read for the implicit add (KIP-890 part 2).
            let mut txn = crate::batch::BatchBuilder::new(1_700_000_000_000)
                .idempotent(4242, 3, 0)
                .transactional();
            txn.push(1_700_000_000_000, Some(&b"k"[..]), Some(&b"v"[..]), &[]);
            let r = ProduceRequest::default()
                .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(s("app-1"))))
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(topic("events"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(txn.finish())),
                        produce_request::PartitionProduceData::default()
                            .with_index(1)
                            .with_records(Some(batch())),
                    ])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::Fetch => {
            let r = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(52_428_800)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic("events"))
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(42)
                            .with_partition_max_bytes(1 << 20),
                        fetch_request::FetchPartition::default()
                            .with_partition(3)
                            .with_partition_max_bytes(1 << 20),
                    ])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::ListOffsets => {
            let r = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic("events"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_timestamp(-2),
                    ])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeCluster => {
            let r =
                DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
            body(&|b| r.encode(b, v))
        }
        ApiKey::IncrementalAlterConfigs => {
            use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
            let r = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("events"))
                    .with_configs(vec![
                        AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(StrBytes::from_static_str("60000"))),
                        AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("cleanup.policy"))
                            .with_config_operation(2)
                            .with_value(Some(StrBytes::from_static_str("compact"))),
                    ]),
                AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("0")),
            ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::AlterConfigs => {
            use alter_configs_request::{AlterConfigsResource, AlterableConfig};
            let r =
                AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default(
                )
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("events"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("segment.ms"))
                    .with_value(Some(StrBytes::from_static_str("3600000")))])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::CreatePartitions => {
            let r = CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(topic("events"))
                        .with_count(8),
                ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::DeleteRecords => {
            let r = DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(topic("events"))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(10),
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(1)
                            .with_offset(-1),
                    ])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::AddPartitionsToTxn => {
            use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
            let r = kafka_protocol::messages::AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(kafka_protocol::messages::TransactionalId(
                    StrBytes::from_static_str("txn-1"),
                ))
                .with_v3_and_below_producer_id(kafka_protocol::messages::ProducerId(7))
                .with_v3_and_below_producer_epoch(0)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(topic("events"))
                    .with_partitions(vec![0, 1])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::AddOffsetsToTxn => {
            let r = kafka_protocol::messages::AddOffsetsToTxnRequest::default()
                .with_transactional_id(kafka_protocol::messages::TransactionalId(
                    StrBytes::from_static_str("txn-1"),
                ))
                .with_producer_id(kafka_protocol::messages::ProducerId(7))
                .with_group_id(kafka_protocol::messages::GroupId(
                    StrBytes::from_static_str("g"),
                ));
            body(&|b| r.encode(b, v))
        }
        ApiKey::TxnOffsetCommit => {
            use kafka_protocol::messages::txn_offset_commit_request::{
                TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
            };
            let r = kafka_protocol::messages::TxnOffsetCommitRequest::default()
                .with_transactional_id(kafka_protocol::messages::TransactionalId(
                    StrBytes::from_static_str("txn-1"),
                ))
                .with_group_id(kafka_protocol::messages::GroupId(
                    StrBytes::from_static_str("g"),
                ))
                .with_producer_id(kafka_protocol::messages::ProducerId(7))
                .with_generation_id(if v >= 3 { 3 } else { -1 })
                .with_member_id(StrBytes::from_static_str(if v >= 3 { "m-1" } else { "" }))
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic("events"))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42)
                        .with_committed_metadata(Some(StrBytes::from_static_str("m")))])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::EndTxn => {
            let r = kafka_protocol::messages::EndTxnRequest::default()
                .with_transactional_id(kafka_protocol::messages::TransactionalId(
                    StrBytes::from_static_str("txn-1"),
                ))
                .with_producer_id(kafka_protocol::messages::ProducerId(7))
                .with_committed(true);
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeTransactions => {
            let r = kafka_protocol::messages::DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![
                    kafka_protocol::messages::TransactionalId(StrBytes::from_static_str("a")),
                    kafka_protocol::messages::TransactionalId(StrBytes::from_static_str("b")),
                ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::ListTransactions => {
            let r = kafka_protocol::messages::ListTransactionsRequest::default()
                .with_state_filters(vec![
                    StrBytes::from_static_str("Ongoing"),
                    StrBytes::from_static_str("Bogus"),
                ])
                .with_producer_id_filters(vec![kafka_protocol::messages::ProducerId(7)])
                .with_duration_filter(if v >= 1 { 1_000 } else { -1 });
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeProducers => {
            use kafka_protocol::messages::describe_producers_request::TopicRequest;
            let r =
                kafka_protocol::messages::DescribeProducersRequest::default().with_topics(vec![
                    TopicRequest::default()
                        .with_name(topic("events"))
                        .with_partition_indexes(vec![0, 1, -1]),
                ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::Metadata => {
            let r = MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic("events"))),
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic("audit"))),
            ]));
            body(&|b| r.encode(b, v))
        }
        ApiKey::ApiVersions => {
            let r = ApiVersionsRequest::default()
                .with_client_software_name(s("librdkafka"))
                .with_client_software_version(s("2.15.1"));
            body(&|b| r.encode(b, v))
        }
        ApiKey::CreateTopics => {
            let r = CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(topic("events"))
                    .with_num_partitions(4)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("86400000"))),
                    ])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::DeleteTopics => {
            let r = if v >= 6 {
                DeleteTopicsRequest::default()
                    .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(topic("events")))])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic("events")])
            }
            .with_timeout_ms(5000);
            body(&|b| r.encode(b, v))
        }
        ApiKey::InitProducerId => {
            let r = InitProducerIdRequest::default().with_transaction_timeout_ms(60_000);
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeConfigs => {
            let r = DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("events"))
                    .with_configuration_keys(Some(vec![s("retention.ms")])),
            ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::OffsetCommit => {
            let r = OffsetCommitRequest::default()
                .with_group_id(group("billing"))
                .with_generation_id_or_member_epoch(3)
                .with_member_id(s("rdkafka-1"))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic("events"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(99)
                                .with_committed_metadata(Some(s(""))),
                        ]),
                ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::OffsetFetch => {
            let r = if v >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group("billing"))
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(topic("events"))
                                .with_partition_indexes(vec![0, 1]),
                        ])),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(group("billing"))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic("events"))
                            .with_partition_indexes(vec![0, 1]),
                    ]))
            };
            body(&|b| r.encode(b, v))
        }
        ApiKey::FindCoordinator => {
            let r = if v >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("billing")])
            } else {
                FindCoordinatorRequest::default().with_key(s("billing"))
            };
            body(&|b| r.encode(b, v))
        }
        ApiKey::JoinGroup => {
            let r = JoinGroupRequest::default()
                .with_group_id(group("billing"))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(30_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(subscription_bytes()),
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("roundrobin"))
                        .with_metadata(subscription_bytes()),
                ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::SyncGroup => {
            let r = SyncGroupRequest::default()
                .with_group_id(group("billing"))
                .with_generation_id(1)
                .with_member_id(s("m-1"))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s("m-1"))
                        .with_assignment(assignment_bytes()),
                ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::Heartbeat => {
            let r = HeartbeatRequest::default()
                .with_group_id(group("billing"))
                .with_generation_id(1)
                .with_member_id(s("m-1"));
            body(&|b| r.encode(b, v))
        }
        ApiKey::LeaveGroup => {
            let r = if v >= 3 {
                LeaveGroupRequest::default()
                    .with_group_id(group("billing"))
                    .with_members(vec![
                        leave_group_request::MemberIdentity::default().with_member_id(s("m-1"))
                    ])
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(group("billing"))
                    .with_member_id(s("m-1"))
            };
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeGroups => {
            let r = DescribeGroupsRequest::default().with_groups(vec![group("billing")]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::ListGroups => body(&|b| ListGroupsRequest::default().encode(b, v)),
        ApiKey::DeleteGroups => {
            let r = DeleteGroupsRequest::default().with_groups_names(vec![group("billing")]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::OffsetDelete => {
            use kafka_protocol::messages::offset_delete_request::{
                OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
            };
            let r = kafka_protocol::messages::OffsetDeleteRequest::default()
                .with_group_id(group("billing"))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(topic("events"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                        OffsetDeleteRequestPartition::default().with_partition_index(1),
                    ])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let r = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group("billing"))
                .with_member_id(StrBytes::from_static_str("m-1"))
                .with_member_epoch(3)
                .with_rebalance_timeout_ms(300_000)
                .with_subscribed_topic_names(Some(vec![topic("events")]))
                .with_subscribed_topic_regex((v >= 1).then(|| StrBytes::from_static_str("ev.*")))
                .with_server_assignor(Some(StrBytes::from_static_str("uniform")))
                .with_topic_partitions(Some(vec![
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_topic_id(uuid::Uuid::from_bytes([7; 16]))
                        .with_partitions(vec![0, 1, 2]),
                ]));
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeTopicPartitions => {
            let r = DescribeTopicPartitionsRequest::default()
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default()
                        .with_name(topic("events")),
                ])
                .with_response_partition_limit(100)
                .with_cursor(Some(
                    describe_topic_partitions_request::Cursor::default()
                        .with_topic_name(topic("events"))
                        .with_partition_index(3),
                ));
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeLogDirs => {
            let r = DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(topic("events"))
                    .with_partitions(vec![0, 1]),
            ]));
            body(&|b| r.encode(b, v))
        }
        ApiKey::OffsetForLeaderEpoch => {
            use kafka_protocol::messages::offset_for_leader_epoch_request::{
                OffsetForLeaderPartition, OffsetForLeaderTopic,
            };
            let r = kafka_protocol::messages::OffsetForLeaderEpochRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(topic("events"))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(0)
                        .with_leader_epoch(0)])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeQuorum => {
            use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
            let r = kafka_protocol::messages::DescribeQuorumRequest::default().with_topics(vec![
                TopicData::default()
                    .with_topic_name(topic("__cluster_metadata"))
                    .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
            ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::AlterReplicaLogDirs => {
            use kafka_protocol::messages::alter_replica_log_dirs_request::{
                AlterReplicaLogDir, AlterReplicaLogDirTopic,
            };
            let r =
                kafka_protocol::messages::AlterReplicaLogDirsRequest::default().with_dirs(vec![
                    AlterReplicaLogDir::default()
                        .with_path(StrBytes::from_static_str("/data"))
                        .with_topics(vec![AlterReplicaLogDirTopic::default()
                            .with_name(topic("events"))
                            .with_partitions(vec![0, 1])]),
                ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::ElectLeaders => {
            let r = ElectLeadersRequest::default()
                .with_election_type(0)
                .with_timeout_ms(5000)
                .with_topic_partitions(Some(vec![
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(topic("events"))
                        .with_partitions(vec![0, 1, 2]),
                ]));
            body(&|b| r.encode(b, v))
        }
        ApiKey::ListPartitionReassignments => {
            let r = ListPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(Some(vec![
                    list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                        .with_name(topic("events"))
                        .with_partition_indexes(vec![0]),
                ]));
            body(&|b| r.encode(b, v))
        }
        ApiKey::AlterPartitionReassignments => {
            use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
            let r = AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(topic("events"))
                    .with_partitions(vec![
                        ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(Some(vec![BrokerId(1)])),
                        ReassignablePartition::default().with_partition_index(1),
                    ])]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::ConsumerGroupDescribe => {
            let r = ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![group("billing"), group("audit")]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::SaslHandshake => {
            let r = kafka_protocol::messages::SaslHandshakeRequest::default()
                .with_mechanism(s("SCRAM-SHA-512"));
            body(&|b| r.encode(b, v))
        }
        ApiKey::SaslAuthenticate => {
            let r = kafka_protocol::messages::SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL"));
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeUserScramCredentials => {
            use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
            let r = kafka_protocol::messages::DescribeUserScramCredentialsRequest::default()
                .with_users(Some(vec![
                    UserName::default().with_name(s("alice")),
                    UserName::default().with_name(s("bob")),
                ]));
            body(&|b| r.encode(b, v))
        }
        ApiKey::AlterUserScramCredentials => {
            use kafka_protocol::messages::alter_user_scram_credentials_request::{
                ScramCredentialDeletion, ScramCredentialUpsertion,
            };
            let r = kafka_protocol::messages::AlterUserScramCredentialsRequest::default()
                .with_deletions(vec![ScramCredentialDeletion::default()
                    .with_name(s("bob"))
                    .with_mechanism(1)])
                .with_upsertions(vec![ScramCredentialUpsertion::default()
                    .with_name(s("alice"))
                    .with_mechanism(2)
                    .with_iterations(8192)
                    .with_salt(Bytes::from_static(b"0123456789abcdef"))
                    .with_salted_password(Bytes::from(vec![7u8; 64]))]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::CreateAcls => {
            use kafka_protocol::messages::create_acls_request::AclCreation;
            let r = kafka_protocol::messages::CreateAclsRequest::default().with_creations(vec![
                AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(s("orders-"))
                    .with_resource_pattern_type(4)
                    .with_principal(s("User:alice"))
                    .with_host(s("*"))
                    .with_operation(4)
                    .with_permission_type(3),
                AclCreation::default()
                    .with_resource_type(3)
                    .with_resource_name(s("billing"))
                    .with_resource_pattern_type(3)
                    .with_principal(s("User:*"))
                    .with_host(s("10.0.0.1"))
                    .with_operation(3)
                    .with_permission_type(2),
            ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeAcls => {
            let r = kafka_protocol::messages::DescribeAclsRequest::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(s("orders")))
                .with_pattern_type_filter(2)
                .with_principal_filter(Some(s("User:alice")))
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1);
            body(&|b| r.encode(b, v))
        }
        ApiKey::DeleteAcls => {
            use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
            let r = kafka_protocol::messages::DeleteAclsRequest::default().with_filters(vec![
                DeleteAclsFilter::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_principal_filter(Some(s("User:bob")))
                    .with_operation(1)
                    .with_permission_type(1),
                DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(Some(s("orders-")))
                    .with_pattern_type_filter(4)
                    .with_operation(4)
                    .with_permission_type(3),
            ]);
            body(&|b| r.encode(b, v))
        }
        ApiKey::DescribeClientQuotas => {
            use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
            let r = kafka_protocol::messages::DescribeClientQuotasRequest::default()
                .with_components(vec![
                    ComponentData::default()
                        .with_entity_type(s("user"))
                        .with_match_type(0)
                        .with_match(Some(s("alice"))),
                    ComponentData::default()
                        .with_entity_type(s("client-id"))
                        .with_match_type(1)
                        .with_match(None),
                ])
                .with_strict(true);
            body(&|b| r.encode(b, v))
        }
        ApiKey::AlterClientQuotas => {
            use kafka_protocol::messages::alter_client_quotas_request::{
                EntityData, EntryData, OpData,
            };
            let r =
                kafka_protocol::messages::AlterClientQuotasRequest::default().with_entries(vec![
                    EntryData::default()
                        .with_entity(vec![
                            EntityData::default()
                                .with_entity_type(s("user"))
                                .with_entity_name(Some(s("alice"))),
                            EntityData::default()
                                .with_entity_type(s("client-id"))
                                .with_entity_name(None),
                        ])
                        .with_ops(vec![
                            OpData::default()
                                .with_key(s("producer_byte_rate"))
                                .with_value(1048576.0),
                            OpData::default()
                                .with_key(s("consumer_byte_rate"))
                                .with_remove(true),
                        ]),
                ]);
            body(&|b| r.encode(b, v))
        }
        _ => None,
    }
}

/// Every API and version the listener offers, as a whole request body
/// (header included): the fuzz corpus's seeds.
pub(crate) fn seeds() -> Vec<Bytes> {
    let mut out = Vec::new();
    for &(api, lo, hi) in all_supported() {
        for v in lo..=hi {
            let msg = populated(api, v)
                .unwrap_or_else(|| panic!("no seed for {api:?} v{v}: add one to populated()"));
            let mut h = RequestHeader::default()
                .with_request_api_key(api as i16)
                .with_request_api_version(v)
                .with_correlation_id(7)
                .with_client_id(Some(s("rdkafka")));
            if api.request_header_version(v) < 1 {
                h.client_id = None;
            }
            let mut b = BytesMut::new();
            h.encode(&mut b, api.request_header_version(v))
                .expect("header encodes");
            b.extend_from_slice(&msg);
            out.push(b.freeze());
        }
    }
    out
}

/// Values a lying count or length takes: negative, huge, just past the end.
#[derive(Debug, Clone, Copy)]
enum Lie {
    MinusTwo,
    MinusOne,
    I32Max,
    TwoPow30,
    Million,
    RemainingPlusOne,
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Truncate(Index),
    /// A big-endian i32 count/length (arrays, bytes) written over the body.
    LieI32(Index, Lie),
    /// A big-endian i16 length (strings).
    LieI16(Index, Lie),
    /// An unsigned varint (compact arrays, strings, bytes; tagged fields).
    LieVarint(Index, Lie),
    /// Another api key and version in the header.
    ApiVersion(i16, i16),
    /// The tail of another seed spliced in at a point.
    Splice(Index, Index, Index),
    /// A tagged-field section claiming `count` fields, then `real` empty
    /// ones, inserted at a point.
    TagFlood(Index, u32, u16),
    Insert(Index, Vec<u8>),
}

fn lie_value(l: Lie, remaining: usize) -> i64 {
    match l {
        Lie::MinusTwo => -2,
        Lie::MinusOne => -1,
        Lie::I32Max => i32::MAX as i64,
        Lie::TwoPow30 => 1 << 30,
        Lie::Million => 1_000_000,
        Lie::RemainingPlusOne => remaining as i64 + 1,
    }
}

fn varint(mut v: u32, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn overwrite(b: &mut Vec<u8>, at: usize, with: &[u8]) {
    let end = (at + with.len()).min(b.len());
    b.splice(at..end, with.iter().copied());
}

fn apply(b: &mut Vec<u8>, m: &Mutation, seeds: &[Bytes]) {
    // Header: api key (2), version (2), correlation id (4), then client id.
    let at = |i: &Index, b: &Vec<u8>| if b.is_empty() { 0 } else { i.index(b.len()) };
    match m {
        Mutation::FlipBit(i, bit) => {
            if !b.is_empty() {
                let p = at(i, b);
                b[p] ^= 1 << (bit % 8);
            }
        }
        Mutation::Truncate(i) => {
            let p = at(i, b);
            b.truncate(p);
        }
        Mutation::LieI32(i, l) => {
            let p = at(i, b);
            let v = lie_value(*l, b.len().saturating_sub(p + 4)) as i32;
            overwrite(b, p, &v.to_be_bytes());
        }
        Mutation::LieI16(i, l) => {
            let p = at(i, b);
            let v = lie_value(*l, b.len().saturating_sub(p + 2)).clamp(-2, i16::MAX as i64) as i16;
            overwrite(b, p, &v.to_be_bytes());
        }
        Mutation::LieVarint(i, l) => {
            let p = at(i, b);
            let v = lie_value(*l, b.len().saturating_sub(p + 1));
            let mut enc = Vec::new();
            // Negative lies become the largest unsigned values (what a
            // sign-extended -1 or -2 reads as).
            varint(v as u32, &mut enc);
            overwrite(b, p, &enc);
        }
        Mutation::ApiVersion(key, version) => {
            if b.len() >= 4 {
                b[0..2].copy_from_slice(&key.to_be_bytes());
                b[2..4].copy_from_slice(&version.to_be_bytes());
            }
        }
        Mutation::Splice(i, which, from) => {
            let p = at(i, b);
            let other = &seeds[which.index(seeds.len())];
            let f = from.index(other.len().max(1)).min(other.len());
            b.truncate(p);
            b.extend_from_slice(&other[f..]);
        }
        Mutation::TagFlood(i, count, real) => {
            let p = at(i, b);
            let mut flood = Vec::new();
            varint(*count, &mut flood);
            for t in 0..*real {
                varint(t as u32, &mut flood);
                varint(0, &mut flood);
            }
            b.splice(p..p, flood);
        }
        Mutation::Insert(i, bytes) => {
            let p = at(i, b);
            b.splice(p..p, bytes.iter().copied());
        }
    }
}

fn lie() -> impl Strategy<Value = Lie> {
    prop_oneof![
        Just(Lie::MinusTwo),
        Just(Lie::MinusOne),
        Just(Lie::I32Max),
        Just(Lie::TwoPow30),
        Just(Lie::Million),
        Just(Lie::RemainingPlusOne),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), lie()).prop_map(|(i, l)| Mutation::LieI32(i, l)),
        2 => (any::<Index>(), lie()).prop_map(|(i, l)| Mutation::LieI16(i, l)),
        3 => (any::<Index>(), lie()).prop_map(|(i, l)| Mutation::LieVarint(i, l)),
        1 => (-2i16..80, -2i16..20).prop_map(|(k, v)| Mutation::ApiVersion(k, v)),
        1 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
        1 => (
            any::<Index>(),
            prop_oneof![Just(10_001u32), Just(1_000_000), Just(u32::MAX), 0u32..50],
            0u16..300
        )
            .prop_map(|(i, c, r)| Mutation::TagFlood(i, c, r)),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
    ]
}

/// Decodes one hostile request body the way the listener does (and what
/// the broker later decodes from it: consumer-protocol bytes), returning
/// the peak bytes allocated.
fn decode_all(body: Bytes) -> usize {
    let len = body.len();
    let (_, peak) = peak_bytes(move || {
        if let Ok(d) = decode(body) {
            super::wire::classic_assignments(&d.work);
        }
    });
    assert!(
        peak <= alloc_bound(len),
        "decoding {len} bytes allocated {peak} bytes at its peak (bound {})",
        alloc_bound(len)
    );
    peak
}

#[test]
fn every_supported_api_and_version_has_a_seed_that_decodes() {
    let seeds = seeds();
    let versions: usize = all_supported()
        .map(|&(_, lo, hi)| (hi - lo + 1) as usize)
        .sum();
    assert_eq!(seeds.len(), versions);
    for s in &seeds {
        let api = i16::from_be_bytes([s[0], s[1]]);
        let v = i16::from_be_bytes([s[2], s[3]]);
        if let Err(e) = decode(s.clone()) {
            panic!("seed api {api} v{v} does not decode: {e}");
        }
        decode_all(s.clone());
    }
}

/// Not a check: writes the seeds as a starting corpus for the libFuzzer
/// target (`fuzz/README.md`): `SHARDLOG_FUZZ_CORPUS=DIR cargo test --lib
/// write_cargo_fuzz_corpus -- --ignored`.
#[test]
#[ignore]
fn write_cargo_fuzz_corpus() {
    let dir = std::env::var("SHARDLOG_FUZZ_CORPUS").expect("SHARDLOG_FUZZ_CORPUS=DIR");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, seed) in seeds().iter().enumerate() {
        let api = i16::from_be_bytes([seed[0], seed[1]]);
        let v = i16::from_be_bytes([seed[2], seed[3]]);
        std::fs::write(format!("{dir}/seed-{api:02}-v{v:02}-{i}"), seed).unwrap();
    }
}

#[test]
fn a_two_billion_element_array_is_refused_without_allocating_it() {
    // The request that aborted the broker: ListOffsets whose topic count
    // claims 2^31-1 elements.
    let mut b = BytesMut::new();
    let h = RequestHeader::default()
        .with_request_api_key(ApiKey::ListOffsets as i16)
        .with_request_api_version(5)
        .with_correlation_id(1)
        .with_client_id(Some(s("x")));
    h.encode(&mut b, ApiKey::ListOffsets.request_header_version(5))
        .unwrap();
    b.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    b.extend_from_slice(&[0]); // isolation level
    b.extend_from_slice(&i32::MAX.to_be_bytes()); // topics: "2^31-1"
    b.extend_from_slice(&[0; 20]);
    let body = b.freeze();
    let (r, peak) = peak_bytes(|| decode(body.clone()));
    let Err(e) = r else {
        panic!("a two-billion element array decoded")
    };
    assert!(e.to_string().contains("array claims"), "{e}");
    assert!(peak < 64 * 1024, "{peak}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn fuzz_kafka_requests_decode_or_fail_within_the_allocation_bound(
        seed in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        thread_local! {
            static SEEDS: Vec<Bytes> = seeds();
        }
        SEEDS.with(|seeds| {
            let mut b = seeds[seed.index(seeds.len())].to_vec();
            for m in &mutations {
                apply(&mut b, m, seeds);
            }
            decode_all(Bytes::from(b));
        });
    }

    #[test]
    fn fuzz_kafka_random_bytes_decode_or_fail_within_the_allocation_bound(
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        decode_all(Bytes::from(body));
    }
}

/// A body of `api` at `version` whose message part is `msg` as given.
fn raw_body(api: ApiKey, version: i16, msg: &[u8]) -> Bytes {
    let h = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(s("x")));
    let mut b = BytesMut::new();
    h.encode(&mut b, api.request_header_version(version))
        .unwrap();
    b.extend_from_slice(msg);
    b.freeze()
}

#[test]
fn the_largest_structures_per_wire_byte_stay_within_the_allocation_bound() {
    let mut worst = Vec::new();
    // 200,000 empty group names: one byte each on the wire (compact).
    let mut m = Vec::new();
    varint(200_001, &mut m);
    m.extend(std::iter::repeat_n(1u8, 200_000));
    m.extend_from_slice(&[0, 0]); // include authorized operations, tags
    worst.push(raw_body(ApiKey::DescribeGroups, 5, &m));
    // 100,000 OffsetFetch topics of three bytes each (empty name, empty
    // partition list, no tags).
    let mut m = vec![1]; // empty group id
    varint(100_001, &mut m);
    for _ in 0..100_000 {
        m.extend_from_slice(&[1, 1, 0]);
    }
    m.extend_from_slice(&[0, 0]); // require stable, tags
    worst.push(raw_body(ApiKey::OffsetFetch, 7, &m));
    // 10,000 empty tagged fields on a Metadata v9 request (Kafka's limit).
    // No topics, allow auto create, no cluster or topic operations.
    let mut m = vec![1, 1, 0, 0];
    varint(10_000, &mut m);
    for t in 0..10_000u32 {
        varint(t, &mut m);
        varint(0, &mut m);
    }
    worst.push(raw_body(ApiKey::Metadata, 9, &m));
    for body in worst {
        let len = body.len();
        if let Err(e) = decode(body.clone()) {
            panic!("a worst case must decode to count: {e}");
        }
        let peak = decode_all(body);
        assert!(peak > len, "the decode did work ({peak} bytes for {len})");
    }
}

#[test]
fn requests_other_than_produce_are_refused_over_the_control_limit() {
    let mut m = Vec::new();
    varint(1, &mut m); // no groups
    m.extend(std::iter::repeat_n(
        0u8,
        codec::DEFAULT_MAX_CONTROL_REQUEST_BYTES,
    ));
    let body = raw_body(ApiKey::DescribeGroups, 5, &m);
    let (r, peak) = peak_bytes(|| decode(body.clone()));
    assert!(
        matches!(r, Err(codec::DecodeError::ControlTooLarge { .. })),
        "{r:?}"
    );
    assert!(peak < 4096, "{peak}");
}
