//! The client library: a blocking connection to a broker speaking the native
//! protocol, with pipelining (send many, then receive in order), and Kafka's
//! default key partitioner.
//!
//! Owns: connecting, request ids, reading response frames, turning wire
//! errors into `ClientError`.
//!
//! Must never: panic on what the broker sends (a response is decoded and
//! verified like any other input), or wait forever: every socket has a timeout.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::protocol::codec::{decode_response, encode_request, DecodeError};
use crate::protocol::frame;
use crate::protocol::*;

/// How long to wait for a connection to be accepted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for any single response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response frame accepted.
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to broker {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("connection to the broker failed: {0}")]
    Io(#[from] io::Error),
    #[error("the broker closed the connection")]
    Closed,
    #[error("undecodable response from the broker: {0}")]
    Decode(#[from] DecodeError),
    #[error("bad response frame: {0}")]
    Frame(#[from] frame::FrameError),
    #[error("{}", .0.message)]
    Broker(WireError),
    #[error("response id {got} does not match request id {want}")]
    OutOfOrder { want: u32, got: u32 },
    #[error("the broker answered {0} with a response of another kind")]
    WrongKind(&'static str),
}

impl ClientError {
    /// The wire error code, when the broker refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker(e) => Some(e.code),
            _ => None,
        }
    }
}

pub struct Client {
    stream: super::tls::Transport,
    buf: BytesMut,
    next_id: u32,
    client_id: String,
}

impl Client {
    /// Connects to `addr` (host:port), trying every address it resolves to.
    pub fn connect(addr: &str) -> Result<Client, ClientError> {
        let err = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(err)?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing");
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(err)?;
                    stream
                        .set_read_timeout(Some(RESPONSE_TIMEOUT))
                        .map_err(err)?;
                    stream
                        .set_write_timeout(Some(RESPONSE_TIMEOUT))
                        .map_err(err)?;
                    // TLS when the process chose it: the server's
                    // certificate is checked against the host asked for.
                    let host = addr
                        .rsplit_once(':')
                        .map_or(addr, |(h, _)| h)
                        .trim_start_matches('[')
                        .trim_end_matches(']');
                    let stream = super::tls::Transport::wrap(stream, host).map_err(err)?;
                    let mut c = Client {
                        stream,
                        buf: BytesMut::with_capacity(256 * 1024),
                        next_id: 1,
                        client_id: format!("shardlog-cli-{}", std::process::id()),
                    };
                    // SASL when the process chose it: before any request.
                    if let Some(login) = super::sasl::chosen() {
                        c.log_in(login)?;
                    }
                    return Ok(c);
                }
                Err(e) => last = e,
            }
        }
        Err(err(last))
    }

    /// One SASL step: the server's token and whether the login is done.
    fn sasl_step(
        &mut self,
        mechanism: Option<&str>,
        token: Vec<u8>,
    ) -> Result<(Bytes, bool), ClientError> {
        match self.call(Request::SaslAuthenticate {
            mechanism: mechanism.map(str::to_owned),
            token: Bytes::from(token),
        })? {
            Response::SaslAuthenticate { token, done } => Ok((token, done)),
            _ => Err(ClientError::WrongKind("SaslAuthenticate")),
        }
    }

    /// Logs in as `login` (a listener with `--native-sasl-enabled-mechanisms`):
    /// PLAIN, or SCRAM with `security::scram::ClientExchange`, the server's
    /// final signature checked (a server without the credential is refused).
    pub fn log_in(&mut self, login: &super::sasl::Login) -> Result<(), ClientError> {
        use crate::security::sasl::SaslMechanism;
        let failed = |message: String| {
            ClientError::Broker(WireError::new(ErrorCode::SaslAuthenticationFailed, message))
        };
        let name = login.mechanism.name();
        let m = match login.mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{}\0{}", login.username, login.password);
                let (_, done) = self.sasl_step(Some(name), token.into_bytes())?;
                return match done {
                    true => Ok(()),
                    false => Err(failed("PLAIN: the broker wants more than one step".into())),
                };
            }
            SaslMechanism::Scram(m) => m,
        };
        let (mut ex, first) = crate::security::scram::ClientExchange::start(
            m,
            &login.username,
            &login.password,
            &mut |b| getrandom::getrandom(b).expect("the OS's random source"),
        );
        let (server_first, _) = self.sasl_step(Some(name), first)?;
        let last = ex
            .respond(&server_first)
            .map_err(|e| failed(format!("{name}: {e}")))?;
        let (server_final, done) = self.sasl_step(None, last)?;
        ex.verify(&server_final).map_err(|_| {
            failed(format!(
                "{name}: the broker's signature is wrong (it does not hold this user's credential)"
            ))
        })?;
        match done {
            true => Ok(()),
            false => Err(failed(format!(
                "{name}: the broker did not finish the login"
            ))),
        }
    }

    /// Sends a request without waiting; returns its correlation id.
    /// Responses come back in send order (`recv`).
    pub fn send(&mut self, request: Request) -> Result<u32, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let frame = encode_request(&RequestFrame {
            version: PROTOCOL_VERSION,
            correlation_id: id,
            client_id: Some(self.client_id.clone()),
            request,
        });
        self.stream.write_all(&frame)?;
        self.stream.flush()?;
        Ok(id)
    }

    /// Sends raw bytes (tests use it to send broken frames).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(self.stream.flush()?)
    }

    /// Receives the next response frame.
    pub fn recv(&mut self) -> Result<ResponseFrame, ClientError> {
        loop {
            if let Some(f) = frame::next_frame(&mut self.buf, MAX_RESPONSE_BYTES)? {
                return Ok(decode_response(&f)?);
            }
            let room = (self.buf.capacity() - self.buf.len()).clamp(256 * 1024, 1 << 20);
            self.buf.reserve(room);
            let n = match self.stream.plain() {
                Some(s) => read_spare(s, &mut self.buf, room)?,
                None => {
                    // Through rustls: into a zeroed window, then kept.
                    let mut chunk = vec![0u8; room.min(256 * 1024)];
                    let n = self.stream.read(&mut chunk)?;
                    self.buf.extend_from_slice(&chunk[..n]);
                    n
                }
            };
            if n == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Receives the response to request `id` (which must be the next one).
    pub fn recv_for(&mut self, id: u32) -> Result<Response, ClientError> {
        let r = self.recv()?;
        if r.correlation_id != id {
            // Id 0 with an error is about the connection (refused at the
            // connection limit, a frame the broker could not read): say that.
            if let (0, Err(e)) = (r.correlation_id, &r.result) {
                return Err(ClientError::Broker(e.clone()));
            }
            return Err(ClientError::OutOfOrder {
                want: id,
                got: r.correlation_id,
            });
        }
        r.result.map_err(ClientError::Broker)
    }

    /// Sends a request and waits for its response.
    pub fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        let id = self.send(request)?;
        self.recv_for(id)
    }

    pub fn api_versions(&mut self) -> Result<Vec<ApiVersionRange>, ClientError> {
        match self.call(Request::ApiVersions)? {
            Response::ApiVersions(v) => Ok(v),
            _ => Err(ClientError::WrongKind("ApiVersions")),
        }
    }

    pub fn metadata(
        &mut self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, ClientError> {
        match self.call(Request::Metadata {
            topics,
            auto_create: false,
            include_internal: false,
        })? {
            Response::Metadata(m) => Ok(m),
            _ => Err(ClientError::WrongKind("Metadata")),
        }
    }

    /// The partitions of one topic; an unknown topic is an error.
    pub fn topic(&mut self, name: &str) -> Result<TopicInfo, ClientError> {
        let m = self.metadata(Some(vec![name.to_owned()]))?;
        let t = m
            .topics
            .into_iter()
            .find(|t| t.name == name)
            .ok_or(ClientError::WrongKind("Metadata"))?;
        match t.error {
            Some(e) => Err(ClientError::Broker(e)),
            None => Ok(t),
        }
    }

    pub fn create_topic(&mut self, name: &str, partitions: u32) -> Result<(), ClientError> {
        self.create_topic_with(name, partitions, &[])
    }

    /// Creates a topic with settings overriding the broker's defaults
    /// (`segment.bytes`, `segment.ms`, `retention.bytes`, `retention.ms`).
    pub fn create_topic_with(
        &mut self,
        name: &str,
        partitions: u32,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        let r = self.call(Request::CreateTopics(vec![CreateTopic {
            name: name.to_owned(),
            partitions,
            configs: configs.to_vec(),
        }]))?;
        match r {
            Response::CreateTopics(rs) => match rs.into_iter().next() {
                Some(TopicResult { error: Some(e), .. }) => Err(ClientError::Broker(e)),
                Some(_) => Ok(()),
                None => Err(ClientError::WrongKind("CreateTopics")),
            },
            _ => Err(ClientError::WrongKind("CreateTopics")),
        }
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        match self.call(Request::DeleteTopics(vec![name.to_owned()]))? {
            Response::DeleteTopics(rs) => match rs.into_iter().next() {
                Some(TopicResult { error: Some(e), .. }) => Err(ClientError::Broker(e)),
                Some(_) => Ok(()),
                None => Err(ClientError::WrongKind("DeleteTopics")),
            },
            _ => Err(ClientError::WrongKind("DeleteTopics")),
        }
    }

    /// Grows a topic to `partitions` (Kafka's CreatePartitions; never
    /// shrinks).
    pub fn create_partitions(&mut self, name: &str, partitions: u32) -> Result<(), ClientError> {
        match self.call(Request::CreatePartitions(vec![CreatePartitionsTopic {
            name: name.to_owned(),
            count: partitions,
        }]))? {
            Response::CreatePartitions(rs) => match rs.into_iter().next() {
                Some(TopicResult { error: Some(e), .. }) => Err(ClientError::Broker(e)),
                Some(_) => Ok(()),
                None => Err(ClientError::WrongKind("CreatePartitions")),
            },
            _ => Err(ClientError::WrongKind("CreatePartitions")),
        }
    }

    /// Changes a live topic's settings (Kafka's IncrementalAlterConfigs):
    /// all of `ops` or none.
    pub fn alter_topic_configs(
        &mut self,
        name: &str,
        ops: Vec<ConfigOp>,
    ) -> Result<(), ClientError> {
        match self.call(Request::AlterConfigs {
            topics: vec![AlterConfigsTopic {
                name: name.to_owned(),
                ops,
                replace: false,
            }],
            validate_only: false,
        })? {
            Response::AlterConfigs(rs) => match rs.into_iter().next() {
                Some(TopicResult { error: Some(e), .. }) => Err(ClientError::Broker(e)),
                Some(_) => Ok(()),
                None => Err(ClientError::WrongKind("AlterConfigs")),
            },
            _ => Err(ClientError::WrongKind("AlterConfigs")),
        }
    }

    /// Partitions, offsets, sizes and settings of topics (`None`: all).
    pub fn describe_topics(
        &mut self,
        topics: Option<Vec<String>>,
    ) -> Result<Vec<TopicDescription>, ClientError> {
        match self.call(Request::DescribeTopics { topics })? {
            Response::DescribeTopics(ts) => Ok(ts),
            _ => Err(ClientError::WrongKind("DescribeTopics")),
        }
    }

    /// Describes one topic; an unknown topic is an error.
    pub fn describe_topic(&mut self, name: &str) -> Result<TopicDescription, ClientError> {
        let t = self
            .describe_topics(Some(vec![name.to_owned()]))?
            .into_iter()
            .next()
            .ok_or(ClientError::WrongKind("DescribeTopics"))?;
        match t.error {
            Some(e) => Err(ClientError::Broker(e)),
            None => Ok(t),
        }
    }

    /// Produces batches to one partition and waits; returns the base offset.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: u32,
        records: Bytes,
        acks: Acks,
    ) -> Result<i64, ClientError> {
        let id = self.send(produce_request(topic, partition, records, acks))?;
        self.recv_produce(id)
    }

    /// Receives the answer to a produce of one partition sent with `send`.
    pub fn recv_produce(&mut self, id: u32) -> Result<i64, ClientError> {
        match self.recv_for(id)? {
            Response::Produce(ts) => {
                let p = ts
                    .into_iter()
                    .flat_map(|t| t.partitions)
                    .next()
                    .ok_or(ClientError::WrongKind("Produce"))?;
                match p.error {
                    Some(e) => Err(ClientError::Broker(e)),
                    None => Ok(p.base_offset),
                }
            }
            _ => Err(ClientError::WrongKind("Produce")),
        }
    }

    /// Fetches from several partitions of one topic in one request.
    pub fn fetch(
        &mut self,
        topic: &str,
        partitions: &[FetchPartition],
        max_bytes: u32,
    ) -> Result<Vec<FetchPartitionResult>, ClientError> {
        self.fetch_wait(topic, partitions, max_bytes, 0, 0)
    }

    /// A long-polling fetch: the broker answers once `min_bytes` of records
    /// are there, or after `max_wait_ms` with whatever it has.
    pub fn fetch_wait(
        &mut self,
        topic: &str,
        partitions: &[FetchPartition],
        max_bytes: u32,
        max_wait_ms: u32,
        min_bytes: u32,
    ) -> Result<Vec<FetchPartitionResult>, ClientError> {
        let req = Request::Fetch(FetchRequest {
            max_wait_ms,
            min_bytes,
            max_bytes,
            topics: vec![FetchTopic {
                name: topic.to_owned(),
                partitions: partitions.to_vec(),
            }],
            read_committed: false,
        });
        match self.call(req)? {
            Response::Fetch(ts) => Ok(ts.into_iter().flat_map(|t| t.partitions).collect()),
            _ => Err(ClientError::WrongKind("Fetch")),
        }
    }

    /// Names this client in requests (the broker shows it in group
    /// descriptions and logs).
    pub fn set_client_id(&mut self, id: &str) {
        self.client_id = id.to_owned();
    }

    /// One heartbeat of the group protocol (join with `member_epoch` 0).
    pub fn group_heartbeat(
        &mut self,
        req: GroupHeartbeatRequest,
    ) -> Result<GroupHeartbeatResponse, ClientError> {
        match self.call(Request::GroupHeartbeat(req))? {
            Response::GroupHeartbeat(r) => Ok(r),
            _ => Err(ClientError::WrongKind("GroupHeartbeat")),
        }
    }

    pub fn leave_group(
        &mut self,
        group: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ClientError> {
        match self.call(Request::LeaveGroup(LeaveGroupRequest {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            member_epoch,
        }))? {
            Response::LeaveGroup => Ok(()),
            _ => Err(ClientError::WrongKind("LeaveGroup")),
        }
    }

    /// Commits offsets; the first partition error fails the call.
    pub fn commit_offsets(&mut self, req: OffsetCommitRequest) -> Result<(), ClientError> {
        let id = self.send(Request::OffsetCommit(req))?;
        self.recv_commit(id)
    }

    /// Receives the answer to an `OffsetCommit` sent with `send`.
    pub fn recv_commit(&mut self, id: u32) -> Result<(), ClientError> {
        match self.recv_for(id)? {
            Response::OffsetCommit(ts) => {
                match ts
                    .into_iter()
                    .flat_map(|t| t.partitions)
                    .find_map(|p| p.error)
                {
                    Some(e) => Err(ClientError::Broker(e)),
                    None => Ok(()),
                }
            }
            _ => Err(ClientError::WrongKind("OffsetCommit")),
        }
    }

    /// The group's committed offsets (`topics` None: all of them).
    pub fn fetch_offsets(
        &mut self,
        group: &str,
        topics: Option<Vec<TopicPartitions>>,
    ) -> Result<Vec<CommittedTopic>, ClientError> {
        match self.call(Request::OffsetFetch(OffsetFetchRequest {
            group: group.to_owned(),
            topics,
            require_stable: false,
        }))? {
            Response::OffsetFetch(ts) => Ok(ts),
            _ => Err(ClientError::WrongKind("OffsetFetch")),
        }
    }

    pub fn list_groups(&mut self) -> Result<Vec<GroupListing>, ClientError> {
        match self.call(Request::ListGroups)? {
            Response::ListGroups(gs) => Ok(gs),
            _ => Err(ClientError::WrongKind("ListGroups")),
        }
    }

    /// Kafka's ListTransactions: `states` (Kafka's names) and
    /// `producer_ids` filter; empty: any.
    pub fn list_transactions(
        &mut self,
        states: &[String],
        producer_ids: &[i64],
    ) -> Result<Vec<TransactionListing>, ClientError> {
        match self.call(Request::ListTransactions {
            states: states.to_vec(),
            producer_ids: producer_ids.to_vec(),
        })? {
            Response::ListTransactions(ts) => Ok(ts),
            _ => Err(ClientError::WrongKind("ListTransactions")),
        }
    }

    /// Kafka's DescribeTransactions of one id (TRANSACTIONAL_ID_NOT_FOUND
    /// as an error when no coordinator knows it).
    pub fn describe_transaction(
        &mut self,
        id: &str,
    ) -> Result<TransactionDescription, ClientError> {
        match self.call(Request::DescribeTransactions(vec![id.to_owned()]))? {
            Response::DescribeTransactions(ts) => {
                let t = ts
                    .into_iter()
                    .next()
                    .ok_or(ClientError::WrongKind("DescribeTransactions"))?;
                match t.error {
                    Some(e) => Err(ClientError::Broker(e)),
                    None => Ok(t),
                }
            }
            _ => Err(ClientError::WrongKind("DescribeTransactions")),
        }
    }

    /// Kafka's DescribeUserScramCredentials: every SCRAM user (None) or
    /// the named ones (an unknown one carries RESOURCE_NOT_FOUND).
    pub fn describe_users(
        &mut self,
        names: Option<&[String]>,
    ) -> Result<Vec<UserDescription>, ClientError> {
        match self.call(Request::DescribeUsers(names.map(<[String]>::to_vec)))? {
            Response::DescribeUsers(us) => Ok(us),
            _ => Err(ClientError::WrongKind("DescribeUsers")),
        }
    }

    /// Kafka's AlterUserScramCredentials: each user's result.
    pub fn alter_users(
        &mut self,
        changes: Vec<crate::security::users::UserChange>,
    ) -> Result<Vec<UserResult>, ClientError> {
        match self.call(Request::AlterUsers(changes))? {
            Response::AlterUsers(rs) => Ok(rs),
            _ => Err(ClientError::WrongKind("AlterUsers")),
        }
    }

    /// Kafka's DescribeAcls: the bindings the filter selects.
    pub fn describe_acls(
        &mut self,
        filter: crate::security::acl::AclFilter,
    ) -> Result<Vec<crate::security::acl::AclBinding>, ClientError> {
        match self.call(Request::DescribeAcls(filter))? {
            Response::DescribeAcls(bs) => Ok(bs),
            _ => Err(ClientError::WrongKind("DescribeAcls")),
        }
    }

    /// Kafka's CreateAcls then DeleteAcls: each creation's error (None:
    /// created), and the bindings each deletion filter removed.
    #[allow(clippy::type_complexity)]
    pub fn alter_acls(
        &mut self,
        create: Vec<crate::security::acl::AclBinding>,
        delete: Vec<crate::security::acl::AclFilter>,
    ) -> Result<
        (
            Vec<Option<WireError>>,
            Vec<Vec<crate::security::acl::AclBinding>>,
        ),
        ClientError,
    > {
        match self.call(Request::AlterAcls { create, delete })? {
            Response::AlterAcls { created, deleted } => Ok((created, deleted)),
            _ => Err(ClientError::WrongKind("AlterAcls")),
        }
    }

    /// Every client quota: each entity with its keys and values.
    pub fn describe_quotas(&mut self) -> Result<crate::security::quota::QuotaEntries, ClientError> {
        match self.call(Request::DescribeQuotas)? {
            Response::DescribeQuotas(q) => Ok(q),
            _ => Err(ClientError::WrongKind("DescribeQuotas")),
        }
    }

    /// Kafka's AlterClientQuotas: each entry's error (None: done).
    pub fn alter_quotas(
        &mut self,
        changes: Vec<crate::security::quota::QuotaChange>,
        validate_only: bool,
    ) -> Result<Vec<Option<WireError>>, ClientError> {
        match self.call(Request::AlterQuotas {
            changes,
            validate_only,
        })? {
            Response::AlterQuotas(r) => Ok(r),
            _ => Err(ClientError::WrongKind("AlterQuotas")),
        }
    }

    pub fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        match self.call(Request::DescribeGroups(vec![group.to_owned()]))? {
            Response::DescribeGroups(gs) => {
                let g = gs
                    .into_iter()
                    .next()
                    .ok_or(ClientError::WrongKind("DescribeGroups"))?;
                match g.error {
                    Some(e) => Err(ClientError::Broker(e)),
                    None => Ok(g),
                }
            }
            _ => Err(ClientError::WrongKind("DescribeGroups")),
        }
    }

    /// Offset of one partition at `timestamp` (LIST_EARLIEST / LIST_LATEST).
    pub fn list_offset(
        &mut self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        offset_of(self.call(list_offsets_request(topic, partition, timestamp))?)
    }
}

fn list_offsets_request(topic: &str, partition: u32, timestamp: i64) -> Request {
    Request::ListOffsets(vec![ListOffsetsTopic {
        name: topic.to_owned(),
        partitions: vec![ListOffsetsPartition {
            partition,
            timestamp,
        }],
    }])
}

/// The one partition's offset in a ListOffsets answer.
fn offset_of(r: Response) -> Result<i64, ClientError> {
    match r {
        Response::ListOffsets(ts) => {
            let p = ts
                .into_iter()
                .flat_map(|t| t.partitions)
                .next()
                .ok_or(ClientError::WrongKind("ListOffsets"))?;
            match p.error {
                Some(e) => Err(ClientError::Broker(e)),
                None => Ok(p.offset),
            }
        }
        _ => Err(ClientError::WrongKind("ListOffsets")),
    }
}

/// Reads from `stream` into `buf`'s spare capacity (up to `max` bytes)
/// without zero-filling it first: zeroing 256 KiB..1 MiB before every read
/// was 14% of a consumer's CPU (perf, BENCHMARKS.md 2026-11-25).
fn read_spare(stream: &TcpStream, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    let ptr = spare.as_mut_ptr();
    loop {
        // SAFETY: the kernel writes at most `want` bytes into the spare
        // capacity `buf` owns; no reference to uninitialized bytes is
        // formed, and only the `n` bytes written become part of `buf`.
        let n = unsafe { libc::recv(stream.as_raw_fd(), ptr.cast(), want, 0) };
        if n >= 0 {
            let n = n as usize;
            debug_assert!(n <= want);
            // SAFETY: the first `n` spare bytes were just written.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            // Same error kinds as `Read::read` (a read timeout is
            // WouldBlock from SO_RCVTIMEO, as with std).
            return Err(e);
        }
    }
}

/// A pipelined request sent through a `RoutedClient`: which connection it
/// went on (a shard's own port, or the public one) and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    shard: Option<u16>,
    id: u32,
}

/// A client that sends each partition's produce and fetch straight to the
/// shard that owns it, on that shard's own port (Metadata names the owner
/// and its address), so the broker never forwards between cores; it falls
/// back to the public address when a shard's port cannot be reached or the
/// broker has no per-shard ports.
pub struct RoutedClient {
    public: Client,
    public_addr: String,
    shards: std::collections::HashMap<u16, Client>,
    /// Shard -> "host:port", for shards with a port of their own.
    nodes: std::collections::HashMap<u16, String>,
    owners: std::collections::HashMap<String, Vec<u16>>,
}

impl RoutedClient {
    pub fn connect(addr: &str) -> Result<RoutedClient, ClientError> {
        Ok(RoutedClient {
            public: Client::connect(addr)?,
            public_addr: addr.to_owned(),
            shards: Default::default(),
            nodes: Default::default(),
            owners: Default::default(),
        })
    }

    /// The connection to the public address (admin calls, metadata).
    pub fn public(&mut self) -> &mut Client {
        &mut self.public
    }

    /// Learns a topic's partitions and their owners; returns the count.
    pub fn topic(&mut self, topic: &str) -> Result<u32, ClientError> {
        let m = self.public.metadata(Some(vec![topic.to_owned()]))?;
        let public_port = self
            .public_addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok());
        for n in &m.nodes {
            if Some(n.port) != public_port {
                self.nodes.insert(n.shard, format!("{}:{}", n.host, n.port));
            }
        }
        let t = m
            .topics
            .into_iter()
            .next()
            .ok_or(ClientError::WrongKind("Metadata"))?;
        if let Some(e) = t.error {
            return Err(ClientError::Broker(e));
        }
        let owners: Vec<u16> = t.partitions.iter().map(|p| p.owner_shard).collect();
        let n = owners.len() as u32;
        self.owners.insert(topic.to_owned(), owners);
        Ok(n)
    }

    /// The owner shard of a partition, if known and reachable on its own port.
    pub fn owner(&mut self, topic: &str, partition: u32) -> Option<u16> {
        let shard = *self.owners.get(topic)?.get(partition as usize)?;
        if self.shards.contains_key(&shard) {
            return Some(shard);
        }
        let addr = self.nodes.get(&shard)?.clone();
        match Client::connect(&addr) {
            Ok(c) => {
                self.shards.insert(shard, c);
                Some(shard)
            }
            Err(_) => {
                // Fall back to the public address from now on.
                self.nodes.remove(&shard);
                None
            }
        }
    }

    fn conn(&mut self, shard: Option<u16>) -> &mut Client {
        match shard.and_then(|s| self.shards.get_mut(&s)) {
            Some(c) => c,
            None => &mut self.public,
        }
    }

    /// Sends a request for one partition on its owner's connection.
    pub fn send_for(
        &mut self,
        topic: &str,
        partition: u32,
        request: Request,
    ) -> Result<Ticket, ClientError> {
        let shard = self.owner(topic, partition);
        let id = self.conn(shard).send(request)?;
        Ok(Ticket { shard, id })
    }

    pub fn recv(&mut self, t: Ticket) -> Result<Response, ClientError> {
        self.conn(t.shard).recv_for(t.id)
    }

    pub fn recv_produce(&mut self, t: Ticket) -> Result<i64, ClientError> {
        self.conn(t.shard).recv_produce(t.id)
    }

    /// Produces to one partition on its owner's port (the public one as a
    /// fallback if the owner's connection fails).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: u32,
        records: Bytes,
        acks: Acks,
    ) -> Result<i64, ClientError> {
        let t = self.send_for(
            topic,
            partition,
            produce_request(topic, partition, records.clone(), acks),
        )?;
        match self.recv_produce(t) {
            Err(ClientError::Io(_) | ClientError::Closed) if t.shard.is_some() => {
                self.forget(t.shard);
                self.public.produce(topic, partition, records, acks)
            }
            r => r,
        }
    }

    /// Fetches one partition from its owner.
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: FetchPartition,
        max_wait_ms: u32,
        min_bytes: u32,
    ) -> Result<FetchPartitionResult, ClientError> {
        let req = |p: FetchPartition| {
            Request::Fetch(FetchRequest {
                max_wait_ms,
                min_bytes,
                max_bytes: p.max_bytes,
                topics: vec![FetchTopic {
                    name: topic.to_owned(),
                    partitions: vec![p],
                }],
                read_committed: false,
            })
        };
        let t = self.send_for(topic, partition.partition, req(partition))?;
        let r = match self.recv(t) {
            Err(ClientError::Io(_) | ClientError::Closed) if t.shard.is_some() => {
                self.forget(t.shard);
                self.public.call(req(partition))
            }
            r => r,
        }?;
        match r {
            Response::Fetch(ts) => ts
                .into_iter()
                .flat_map(|t| t.partitions)
                .next()
                .ok_or(ClientError::WrongKind("Fetch")),
            _ => Err(ClientError::WrongKind("Fetch")),
        }
    }

    /// Offset of one partition at `timestamp` (LIST_EARLIEST /
    /// LIST_LATEST), asked of its owner (the public port as a fallback, as
    /// for fetch): on the public connection it would be forwarded whenever
    /// that connection landed on another shard.
    pub fn list_offset(
        &mut self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let req = || list_offsets_request(topic, partition, timestamp);
        let t = self.send_for(topic, partition, req())?;
        let r = match self.recv(t) {
            Err(ClientError::Io(_) | ClientError::Closed) if t.shard.is_some() => {
                self.forget(t.shard);
                self.public.call(req())
            }
            r => r,
        }?;
        offset_of(r)
    }

    fn forget(&mut self, shard: Option<u16>) {
        if let Some(s) = shard {
            self.shards.remove(&s);
            self.nodes.remove(&s);
        }
    }

    /// Which shard connections are open (for tests and tools).
    pub fn connected_shards(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.shards.keys().copied().collect();
        v.sort();
        v
    }
}

/// A produce request for one partition.
pub fn produce_request(topic: &str, partition: u32, records: Bytes, acks: Acks) -> Request {
    Request::Produce(ProduceRequest {
        acks,
        timeout_ms: 30_000,
        topics: vec![ProduceTopic {
            name: topic.to_owned(),
            partitions: vec![ProducePartition { partition, records }],
        }],
    })
}

/// Kafka's murmur2 hash, so a key lands on the same partition as with Kafka's
/// default partitioner (`toPositive(murmur2(key)) % partitions`).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0);
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
