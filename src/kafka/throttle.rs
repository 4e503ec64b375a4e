//! Client quotas enforced on one shard (one Kafka broker, as each shard
//! is advertised): Kafka's byte-rate sensors and throttle (KIP-13, KIP-219:
//! the answer carries `throttle_time_ms` and the connection reads nothing
//! more for that long).
//!
//! Owns: the shard's sensors, one per quota entity a client falls under
//! (its own user and client id where the quota is a default's, as Kafka's
//! metric tags), and the decision for one request: record what it moved
//! (bytes) or took (request time, KIP-124), then how long its client must
//! wait (`Charge`: one request's, with its connection's mute, for both
//! doors); and where a Kafka response frame carries that wait. Time comes
//! in as an argument.
//!
//! Must never: slow a client no quota names, or grow without bound (idle
//! sensors are dropped past a count).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::ApiKey;

use crate::rt::Meter;
use crate::security::quota::{Entity, Name, Pacer, Quotas, REQUEST_PERCENTAGE};

/// Sensors kept before idle ones are dropped.
const MAX_SENSORS: usize = 10_000;

/// Who a request is, to the quotas.
#[derive(Debug, Clone)]
pub struct Client {
    /// The principal's name (`alice` of `User:alice`; `ANONYMOUS` without
    /// authentication, as Kafka).
    pub user: String,
    pub client_id: String,
}

impl Client {
    /// The quota entity of `principal` (`User:alice`: the user alice; the
    /// principal as it is otherwise) with `client_id`.
    pub fn of(principal: &str, client_id: String) -> Client {
        Client {
            user: principal
                .strip_prefix("User:")
                .unwrap_or(principal)
                .to_owned(),
            client_id,
        }
    }
}

/// One shard's sensors.
#[derive(Debug, Default)]
pub struct Throttle {
    sensors: RefCell<HashMap<(Entity, &'static str), Pacer>>,
}

impl Throttle {
    /// Records `amount` bytes under `key` (producer_byte_rate or
    /// consumer_byte_rate) for the client's quota, and returns the throttle
    /// in ms its rate now earns (0: within its quota, or no quota).
    pub fn record(
        &self,
        quotas: &Quotas,
        client: &Client,
        key: &'static str,
        amount: u64,
        now_ms: u64,
    ) -> u64 {
        self.record_amount(quotas, client, key, amount as f64, now_ms)
    }

    /// Records `nanos` of request time against the client's
    /// request_percentage quota (a percentage of one thread's time: 200 is
    /// two threads' worth, as Kafka's), and returns the throttle in ms.
    pub fn record_time(&self, quotas: &Quotas, client: &Client, nanos: u64, now_ms: u64) -> u64 {
        // In percent-seconds, the unit a quota of percent per second paces.
        let amount = nanos as f64 * 100.0 / 1e9;
        self.record_amount(quotas, client, REQUEST_PERCENTAGE, amount, now_ms)
    }

    fn record_amount(
        &self,
        quotas: &Quotas,
        client: &Client,
        key: &'static str,
        amount: f64,
        now_ms: u64,
    ) -> u64 {
        let Some((entity, quota)) = quotas.quota_for(Some(&client.user), &client.client_id, key)
        else {
            return 0;
        };
        // A default's quota is each client's own: the sensor names them.
        let concrete = Entity {
            user: entity
                .user
                .as_ref()
                .map(|_| Name::Named(client.user.clone())),
            client_id: entity
                .client_id
                .as_ref()
                .map(|_| Name::Named(client.client_id.clone())),
        };
        let mut sensors = self.sensors.borrow_mut();
        if sensors.len() >= MAX_SENSORS {
            sensors.retain(|_, r| !r.is_idle(now_ms));
        }
        sensors
            .entry((concrete, key))
            .or_default()
            .record(now_ms, amount, quota)
    }
}

/// One request's client quotas, for either door: the shard's sensors, who
/// the client is, and its connection's mute (KIP-219: the connection reads
/// nothing until then).
#[derive(Debug, Clone)]
pub struct Charge {
    throttle: Rc<Throttle>,
    quotas: Rc<Quotas>,
    client: Client,
    muted_until: Rc<Cell<u64>>,
    /// The throttle the answer carries (the byte rates' so far).
    pub throttle_ms: u64,
    /// The request's time on this shard, when a request_percentage quota
    /// names the client.
    pub meter: Option<Meter>,
}

impl Charge {
    /// The charge for one request of `client` under `quotas`; None when
    /// none can apply: a request that moves no bytes (not a Produce or a
    /// Fetch, `moves_bytes`) from a client no request_percentage quota
    /// names.
    pub fn new(
        throttle: &Rc<Throttle>,
        quotas: Rc<Quotas>,
        client: Client,
        muted_until: &Rc<Cell<u64>>,
        moves_bytes: bool,
    ) -> Option<Charge> {
        let meter = quotas
            .quota_for(Some(&client.user), &client.client_id, REQUEST_PERCENTAGE)
            .map(|_| Meter::default());
        (meter.is_some() || moves_bytes).then(|| Charge {
            throttle: throttle.clone(),
            quotas,
            client,
            muted_until: muted_until.clone(),
            throttle_ms: 0,
            meter,
        })
    }

    /// Records `amount` bytes under `key` at `now_ms`; the throttle it
    /// earns mutes the connection until then.
    pub fn record(&mut self, key: &'static str, amount: u64, now_ms: u64) -> u64 {
        let ms = self
            .throttle
            .record(&self.quotas, &self.client, key, amount, now_ms);
        self.mute(now_ms, ms)
    }

    /// Records the request's time so far against its request_percentage
    /// quota (0 without one); the throttle mutes the connection as above.
    pub fn record_time(&mut self, now_ms: u64) -> u64 {
        let Some(m) = &self.meter else { return 0 };
        let ms = self
            .throttle
            .record_time(&self.quotas, &self.client, m.nanos(), now_ms);
        self.mute(now_ms, ms)
    }

    fn mute(&self, now_ms: u64, ms: u64) -> u64 {
        if ms > 0 {
            let until = now_ms + ms;
            self.muted_until.set(self.muted_until.get().max(until));
        }
        ms
    }
}

/// The first version from which `api`'s response body opens with
/// throttle_time_ms (Kafka's message schemas; checked against the
/// encodings in the tests). None: the field is elsewhere (Produce,
/// ApiVersions, OffsetDelete, ...) or absent (SASL's), and only the mute
/// holds the client; Produce's and Fetch's are set where they are encoded.
fn throttle_first_since(api: ApiKey) -> Option<i16> {
    use ApiKey::*;
    Some(match api {
        Fetch => 1,
        ListOffsets | JoinGroup => 2,
        Metadata | OffsetCommit | OffsetFetch => 3,
        FindCoordinator | Heartbeat | LeaveGroup | SyncGroup | DescribeGroups | ListGroups
        | DeleteTopics => 1,
        CreateTopics | OffsetForLeaderEpoch => 2,
        DeleteRecords
        | InitProducerId
        | AddPartitionsToTxn
        | AddOffsetsToTxn
        | EndTxn
        | TxnOffsetCommit
        | DescribeAcls
        | CreateAcls
        | DeleteAcls
        | DescribeConfigs
        | AlterConfigs
        | AlterReplicaLogDirs
        | DescribeLogDirs
        | CreatePartitions
        | DeleteGroups
        | ElectLeaders
        | IncrementalAlterConfigs
        | AlterPartitionReassignments
        | ListPartitionReassignments
        | DescribeClientQuotas
        | AlterClientQuotas
        | DescribeUserScramCredentials
        | AlterUserScramCredentials
        | DescribeCluster
        | DescribeProducers
        | DescribeTransactions
        | ListTransactions
        | ConsumerGroupHeartbeat
        | ConsumerGroupDescribe
        | DescribeTopicPartitions => 0,
        _ => return None,
    })
}

/// Writes `ms` into a whole response frame (length prefix, header, body)
/// as its throttle_time_ms, where the body opens with it; false where it
/// does not (the frame is left as it was).
pub fn put_throttle(frame: &mut [u8], api: ApiKey, version: i16, ms: i32) -> bool {
    if throttle_first_since(api).is_none_or(|v| version < v) {
        return false;
    }
    // Length, correlation id, and a flexible header's (empty) tagged fields:
    // our encoder writes none, so their count is one zero byte.
    let flexible = api.response_header_version(version) >= 1;
    if flexible && frame.get(8) != Some(&0) {
        return false; // header tagged fields we did not write
    }
    let at = 8 + usize::from(flexible);
    match frame.get_mut(at..at + 4) {
        Some(field) => {
            field.copy_from_slice(&ms.to_be_bytes());
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::codec::all_supported;
    use crate::kafka::wire::encode_frame;
    use crate::security::quota::PRODUCER_BYTE_RATE;
    use kafka_protocol::messages::*;

    /// For every API and version served, `put_throttle` finds the field
    /// exactly where kafka-protocol encodes it, and claims no other.
    #[test]
    fn the_throttle_is_written_where_each_response_carries_it() {
        const MARK: i32 = 0x5A6B_7C0D;
        let mut checked = 0;
        macro_rules! each {
            ($($api:ident => $ty:ty),* $(,)?) => {$(
                let (lo, hi) = crate::kafka::codec::supported_range(ApiKey::$api)
                    .expect("served");
                for v in lo..=hi {
                    let mut r = <$ty>::default();
                    r.throttle_time_ms = MARK;
                    let marked = encode_frame(ApiKey::$api, v, 7, &r).unwrap();
                    let at = marked.windows(4).position(|w| w == MARK.to_be_bytes());
                    let plain = encode_frame(ApiKey::$api, v, 7, &<$ty>::default()).unwrap();
                    let mut patched = plain.to_vec();
                    let put = put_throttle(&mut patched, ApiKey::$api, v, MARK);
                    if put {
                        assert_eq!(&patched[..], &marked[..], "{} v{v}", stringify!($api));
                    } else {
                        assert_eq!(&patched[..], &plain[..]);
                        // Not claimed: only where the body does not open with it.
                        let body = 8 + usize::from(ApiKey::$api.response_header_version(v) >= 1);
                        assert_ne!(at, Some(body), "{} v{v} opens with it", stringify!($api));
                    }
                    checked += 1;
                }
            )*};
        }
        each!(
            Produce => ProduceResponse,
            Fetch => FetchResponse,
            ListOffsets => ListOffsetsResponse,
            Metadata => MetadataResponse,
            OffsetCommit => OffsetCommitResponse,
            OffsetFetch => OffsetFetchResponse,
            FindCoordinator => FindCoordinatorResponse,
            JoinGroup => JoinGroupResponse,
            Heartbeat => HeartbeatResponse,
            LeaveGroup => LeaveGroupResponse,
            SyncGroup => SyncGroupResponse,
            DescribeGroups => DescribeGroupsResponse,
            ListGroups => ListGroupsResponse,
            ApiVersions => ApiVersionsResponse,
            CreateTopics => CreateTopicsResponse,
            DeleteTopics => DeleteTopicsResponse,
            DeleteRecords => DeleteRecordsResponse,
            InitProducerId => InitProducerIdResponse,
            OffsetForLeaderEpoch => OffsetForLeaderEpochResponse,
            AddPartitionsToTxn => AddPartitionsToTxnResponse,
            AddOffsetsToTxn => AddOffsetsToTxnResponse,
            EndTxn => EndTxnResponse,
            TxnOffsetCommit => TxnOffsetCommitResponse,
            DescribeAcls => DescribeAclsResponse,
            CreateAcls => CreateAclsResponse,
            DeleteAcls => DeleteAclsResponse,
            DescribeConfigs => DescribeConfigsResponse,
            AlterConfigs => AlterConfigsResponse,
            AlterReplicaLogDirs => AlterReplicaLogDirsResponse,
            DescribeLogDirs => DescribeLogDirsResponse,
            CreatePartitions => CreatePartitionsResponse,
            DeleteGroups => DeleteGroupsResponse,
            ElectLeaders => ElectLeadersResponse,
            IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
            AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
            ListPartitionReassignments => ListPartitionReassignmentsResponse,
            OffsetDelete => OffsetDeleteResponse,
            DescribeClientQuotas => DescribeClientQuotasResponse,
            AlterClientQuotas => AlterClientQuotasResponse,
            DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
            AlterUserScramCredentials => AlterUserScramCredentialsResponse,
            DescribeCluster => DescribeClusterResponse,
            DescribeProducers => DescribeProducersResponse,
            DescribeTransactions => DescribeTransactionsResponse,
            ListTransactions => ListTransactionsResponse,
            ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
            ConsumerGroupDescribe => ConsumerGroupDescribeResponse,
            DescribeTopicPartitions => DescribeTopicPartitionsResponse,
        );
        // Every API served is in the list (SASL's and DescribeQuorum have
        // no throttle field).
        let served: usize = all_supported()
            .filter(|(k, _, _)| {
                !matches!(
                    k,
                    ApiKey::SaslHandshake | ApiKey::SaslAuthenticate | ApiKey::DescribeQuorum
                )
            })
            .map(|&(_, lo, hi)| (hi - lo + 1) as usize)
            .sum();
        assert_eq!(checked, served);
    }

    #[test]
    fn a_client_over_its_quota_is_throttled_and_another_is_not() {
        let mut q = Quotas::default();
        q.alter(
            &Entity {
                user: None,
                client_id: Some(Name::Named("slow".into())),
            },
            PRODUCER_BYTE_RATE,
            Some(1000.0),
        )
        .unwrap();
        let t = Throttle::default();
        let who = |c: &str| Client {
            user: "ANONYMOUS".into(),
            client_id: c.into(),
        };
        // A burst of 1 s at 1000 B/s is 1,000 bytes: 30,000 at once is over.
        assert!(t.record(&q, &who("slow"), PRODUCER_BYTE_RATE, 30_000, 50_000) > 0);
        assert_eq!(
            t.record(&q, &who("fast"), PRODUCER_BYTE_RATE, 30_000_000, 50_000),
            0
        );
        // Defaults are per client: two clients under a default quota each
        // get their own budget.
        let mut d = Quotas::default();
        d.alter(
            &Entity {
                user: None,
                client_id: Some(Name::Default),
            },
            PRODUCER_BYTE_RATE,
            Some(1000.0),
        )
        .unwrap();
        assert_eq!(t.record(&d, &who("a"), PRODUCER_BYTE_RATE, 900, 60_000), 0);
        assert_eq!(t.record(&d, &who("b"), PRODUCER_BYTE_RATE, 900, 60_000), 0);
        assert!(t.record(&d, &who("a"), PRODUCER_BYTE_RATE, 20_000, 60_000) > 0);
    }
}
