//! The broker process: starts the shard executors, accepts connections and
//! hands each to the shared connection loop (`conn::serve`) with its door
//! (`native::NativeDoor`, `kafka::KafkaDoor`).
//!
//! Owns: startup (recovery, owners, the mesh), listeners, the connection
//! limit, the shard's connection count and read budget, the clean stop.
//!
//! Must never: interpret requests (the shard does) or let one connection's
//! bad input affect another: every failure here ends at most that connection.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use thiserror::Error;

use crate::conn::{self, CloseReason, Limits, Listener, StopSignal, Timeouts};
use crate::kafka::KafkaDoor;
use crate::metrics::Metrics;
use crate::native::{error_frame, NativeDoor};
use crate::partition::{FsyncPolicy, PartitionConfig};
use crate::protocol::codec::encode_response;
use crate::protocol::ErrorCode;
use crate::protocol::NodeInfo;
use crate::router::{Msg, Router};
use crate::rt;
use crate::shard::{Shard, ShardConfig};
use crate::storage::meta::LogConfig;
use crate::storage::meta::TopicMeta;
use crate::storage::segment::TAIL_BUFFER_BYTES;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub fsync: FsyncPolicy,
    /// Largest frame accepted; a longer one is answered with an error and the
    /// connection closed (framing cannot be trusted past it).
    pub max_frame_bytes: usize,
    /// Requests of one connection being worked on at once; the reader waits
    /// (and so does the client, through TCP) when this many are pending.
    pub max_inflight_per_connection: usize,
    /// Registered io_uring buffer memory per executor.
    pub io_memory_bytes: usize,
    /// Largest run of record batches one produce may carry for one partition.
    pub max_batch_bytes: usize,
    /// Memory per shard for tail buffers (half) and bytes appended but not
    /// yet written (the other half); producers wait while it is used up.
    pub memory_budget: u64,
    /// Bytes per shard of recent batches kept for fetches (0: none).
    pub batch_cache_bytes: u64,
    /// Number of shards (executors, one per CPU by default).
    pub shards: u16,
    /// Shard i also listens on this port + i (None: no per-shard ports).
    pub shard_port_base: Option<u16>,
    /// Open client connections per shard; one more is answered with
    /// TooManyConnections and closed.
    pub max_connections: usize,
    /// On stop, how long connections get to finish what is in flight.
    pub drain_timeout: Duration,
    /// Largest Kafka request body other than Produce
    /// (`kafka::codec::decode_request`).
    pub max_control_request_bytes: usize,
    /// Bytes of requests being read that one shard holds at most (Kafka's
    /// `queued.max.request.bytes`, per shard); connections that need more
    /// stop reading until frames are handed on (`conn::ReadBudget`).
    pub queued_max_request_bytes: usize,
    /// A connection with no request read and nothing in flight for this
    /// long is closed (Kafka's `connections.max.idle.ms`).
    pub connections_max_idle: Duration,
    /// A connection that started a frame and then sends nothing for this
    /// long is closed, and the frame's memory freed.
    pub request_read_timeout: Duration,
    /// Segment roll and retention defaults; topics may override them.
    pub log: LogConfig,
    /// How often retention looks for segments to delete.
    pub retention_check: Duration,
    /// Compaction's budget per shard, and how often each shard looks for
    /// logs due for a cleaning.
    pub cleaner_limits: crate::storage::cleaner::Limits,
    pub cleaner_check: Duration,
    /// Metadata may create missing topics with this many partitions
    /// (`auto.create.topics.enable`, `num.partitions`); None: off.
    pub auto_create_partitions: Option<u32>,
    /// Partitions of a topic created without a count (`num.partitions`).
    pub num_partitions: u32,
    /// How long a classic group's first rebalance waits for more members
    /// (`group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay: Duration,
    /// Kafka's `transaction.version` the Kafka listener finalizes.
    pub transaction_version: i16,
    /// SASL mechanisms the Kafka listener requires (empty: none).
    pub sasl_enabled_mechanisms: Vec<crate::security::sasl::SaslMechanism>,
    /// How long a Kafka SASL session lasts before the client must
    /// re-authenticate (`connections.max.reauth.ms`, KIP-368); 0: for ever.
    pub connections_max_reauth_ms: u64,
    /// SASL mechanisms the native listener requires (`--native-sasl-enabled-mechanisms`).
    pub native_sasl_enabled_mechanisms: Vec<crate::security::sasl::SaslMechanism>,
    /// Check Kafka requests against the ACLs (`--authorizer acl`).
    pub authorizer: bool,
    /// Principals the authorizer always allows (`--super-users`).
    pub super_users: Vec<String>,
    /// TLS on the Kafka listener and its per-shard ports (`--kafka-tls`).
    pub kafka_tls: bool,
    /// TLS on the native listener and its per-shard ports (`--native-tls`).
    pub native_tls: bool,
    /// The TLS listeners' files.
    pub tls_files: Option<crate::tls::TlsFiles>,
    /// Moved by SIGHUP: each shard reloads the TLS files at its next
    /// handshake.
    pub tls_reload: Arc<crate::tls::ReloadGeneration>,
    /// Every shard's metrics; `start` replaces it when it has fewer shards
    /// than `shards` (read it back with `Broker::metrics`).
    pub metrics: Arc<Metrics>,
    /// The Kafka listener's address, every shard accepts on it (None: off).
    pub kafka_listen: Option<SocketAddr>,
    /// Shard i also accepts Kafka clients on this port + i (None: off).
    pub kafka_port_base: Option<u16>,
    /// Test hook: shards do not start recovering their logs before this file
    /// exists (`/healthz` tests see the broker in recovery, deterministically).
    pub hold_recovery_until: Option<PathBuf>,
}

impl BrokerConfig {
    /// Whether the native listener knows who its clients are: SASL, or TLS
    /// with client certificates (the authorizer checks it then).
    pub fn native_authenticates(&self) -> bool {
        !self.native_sasl_enabled_mechanisms.is_empty()
            || (self.native_tls
                && self
                    .tls_files
                    .as_ref()
                    .is_some_and(|f| f.client_ca.is_some()))
    }

    /// Shard `id`'s own address, if per-shard ports are on.
    pub fn shard_addr(&self, id: u16) -> Option<SocketAddr> {
        self.shard_port_base
            .map(|base| SocketAddr::new(self.listen.ip(), base.saturating_add(id)))
    }

    /// Shard `id`'s own Kafka address, if the Kafka listener and its
    /// per-shard ports are on.
    pub fn kafka_shard_addr(&self, id: u16) -> Option<SocketAddr> {
        let listen = self.kafka_listen?;
        self.kafka_port_base
            .map(|base| SocketAddr::new(listen.ip(), base.saturating_add(id)))
    }

    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> BrokerConfig {
        BrokerConfig {
            data_dir,
            listen,
            fsync: FsyncPolicy::Always,
            max_frame_bytes: 64 << 20,
            max_inflight_per_connection: 64,
            io_memory_bytes: 4 << 20,
            max_batch_bytes: 16 << 20,
            memory_budget: 512 << 20,
            batch_cache_bytes: 256 << 20,
            shards: 1,
            shard_port_base: None,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(10),
            max_control_request_bytes: crate::kafka::codec::DEFAULT_MAX_CONTROL_REQUEST_BYTES,
            queued_max_request_bytes: 256 << 20,
            connections_max_idle: Duration::from_secs(600),
            request_read_timeout: Duration::from_secs(30),
            log: LogConfig::default(),
            retention_check: Duration::from_secs(30),
            cleaner_limits: crate::storage::cleaner::Limits::default(),
            cleaner_check: Duration::from_secs(15),
            auto_create_partitions: Some(1),
            num_partitions: 1,
            group_initial_rebalance_delay: Duration::from_secs(3),
            transaction_version: crate::kafka::codec::TRANSACTION_VERSION,
            sasl_enabled_mechanisms: Vec::new(),
            connections_max_reauth_ms: 0,
            native_sasl_enabled_mechanisms: Vec::new(),
            authorizer: false,
            super_users: Vec::new(),
            kafka_tls: false,
            native_tls: false,
            tls_files: None,
            tls_reload: Arc::default(),
            metrics: Metrics::new(1, true),
            hold_recovery_until: None,
            kafka_listen: None,
            kafka_port_base: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot start executor: {0}")]
    Executor(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open data directory: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("shard {0} stopped before it was ready")]
    Died(u16),
    #[error("stop requested while the shards were still recovering their logs")]
    StoppedStarting,
    #[error("shard stopped, but not everything was flushed: {0}")]
    Close(String),
    #[error("shard thread: {0}")]
    Join(std::io::Error),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// A running broker.
pub struct Broker {
    pub local_addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    handles: Vec<rt::ExecutorHandle<Result<(), String>>>,
}

impl Broker {
    /// Loads the topics (reassigning owners if the shard count changed),
    /// starts one executor per shard (pinned to its own CPU when there are
    /// enough), connects them with the channel mesh, and returns once every
    /// shard serves on the listen address.
    pub fn start(config: BrokerConfig) -> Result<Broker, ServerError> {
        Self::start_with_stop(config, Arc::new(AtomicBool::new(false)))
    }

    /// As `start`, with the stop flag given: setting it while the shards
    /// still recover (a large log can take a while) makes `start` give up
    /// instead of waiting for them (the process is expected to exit then).
    pub fn start_with_stop(
        mut config: BrokerConfig,
        stop: Arc<AtomicBool>,
    ) -> Result<Broker, ServerError> {
        let n = config.shards.max(1);
        if config.metrics.shard_count() < n as usize {
            config.metrics = Metrics::new(n, config.metrics.enabled());
        }
        let data = &config.data_dir;
        std::fs::create_dir_all(crate::storage::topics_dir(data))
            .map_err(|e| crate::storage::StorageError::io("create dir", data, e))?;
        // Written once here, read by every executor (`rt::probe_polled_io`).
        rt::write_probe_marker(data)
            .map_err(|e| crate::storage::StorageError::io("write", data, e))?;
        ensure_addrs_free(&config)?;
        crate::storage::meta::empty_trash(data)?;
        let mut metas = crate::storage::meta::load_for_shards(data, n)?;
        crate::storage::meta::ensure_offsets_topic(data, &mut metas, n)?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<SocketAddr, ServerError>>();
        let cpus = rt::allowed_cpus();
        let pinned = (n as usize) <= cpus.len();
        if !pinned {
            tracing::warn!(
                shards = n,
                cpus = cpus.len(),
                "more shards than CPUs this process may use: shards are not pinned and share cores"
            );
        }
        let (nodes, kafka_nodes) = (native_nodes(&config), kafka_nodes(&config));
        let mut handles = Vec::with_capacity(n as usize);
        let opened = Arc::new(std::sync::Barrier::new(n as usize));
        for (i, end) in
            rt::mesh::full::<crate::router::Msg>(n as usize, crate::router::MESH_CAPACITY)
                .into_iter()
                .enumerate()
        {
            let id = i as u16;
            let placement = if pinned {
                rt::Placement::Cpu(cpus[i])
            } else {
                rt::Placement::Unbound
            };
            let (cfg, metas, nodes) = (config.clone(), metas.clone(), nodes.clone());
            let kafka_nodes = kafka_nodes.clone();
            let (stop2, ready, opened) = (stop.clone(), ready_tx.clone(), opened.clone());
            let started = rt::spawn_executor(
                &format!("shard-{id}"),
                placement,
                config.io_memory_bytes,
                move || {
                    // Every log line from this executor's thread carries
                    // `shard{id=N}`: the span stays entered for the
                    // thread's life (its guard is leaked on purpose).
                    std::mem::forget(tracing::info_span!("shard", id).entered());
                    async move {
                        run_shard(
                            id,
                            cfg,
                            metas,
                            nodes,
                            kafka_nodes,
                            end,
                            stop2,
                            ready,
                            opened,
                        )
                        .await
                    }
                },
            );
            match started {
                Ok(h) => handles.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(ServerError::Executor(e));
                }
            }
            match placement {
                rt::Placement::Cpu(c) => tracing::info!(shard = id, cpu = c, "shard pinned"),
                rt::Placement::Unbound => tracing::info!(shard = id, "shard not pinned"),
            }
        }
        drop(ready_tx);
        let local_addr = wait_ready(&ready_rx, n, config.listen, &stop, &mut handles)?;
        config.metrics.set_ready(true);
        Ok(Broker {
            local_addr,
            metrics: config.metrics.clone(),
            stop,
            handles,
        })
    }

    /// Every shard's metrics (`/metrics` encodes them).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// A flag that stops the broker when set (signal handlers set it).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits until the broker stopped (after `stop_flag` was set) and every
    /// partition was flushed, synced and closed.
    pub fn join(self) -> Result<(), ServerError> {
        let mut first = Ok(());
        for h in self.handles {
            let r = match h.join() {
                Ok(r) => r.map_err(ServerError::Close),
                Err(e) => Err(ServerError::Join(e)),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

// One executor's life: its arguments are what it is handed at spawn.
/// How long a start waits for its address to be released.
const ADDR_BUSY_WAIT: Duration = Duration::from_secs(5);

/// `rt::check_addr_free`, retried for a few seconds: a broker killed with
/// -9 had accepts in flight in io_uring, and the kernel releases those
/// listening sockets only when it tears the ring down, a moment after the
/// process is gone. A restart right after a crash must not fail on that; a
/// broker that is really running there still refuses the start.
fn wait_addr_free(addr: SocketAddr) -> Result<(), ServerError> {
    let deadline = std::time::Instant::now() + ADDR_BUSY_WAIT;
    let mut warned = false;
    loop {
        match rt::check_addr_free(addr) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                if !warned {
                    tracing::warn!(%addr, "address in use; waiting up to {ADDR_BUSY_WAIT:?} for it to be released");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(source) => return Err(ServerError::Listen { addr, source }),
        }
    }
}

/// Every shard binds with SO_REUSEPORT, which would also let a second
/// broker share an address silently, splitting the clients between the
/// two: make sure nobody listens on any of ours yet.
fn ensure_addrs_free(config: &BrokerConfig) -> Result<(), ServerError> {
    let n = config.shards.max(1);
    if config.listen.port() != 0 {
        wait_addr_free(config.listen)?;
    }
    if let Some(addr) = config.kafka_listen.filter(|a| a.port() != 0) {
        wait_addr_free(addr)?;
    }
    for id in 0..n {
        for addr in [config.shard_addr(id), config.kafka_shard_addr(id)]
            .into_iter()
            .flatten()
        {
            wait_addr_free(addr)?;
        }
    }
    Ok(())
}

/// Metadata's nodes: each shard at its own port (the public one when
/// per-shard ports are off).
fn native_nodes(config: &BrokerConfig) -> Vec<NodeInfo> {
    let n = config.shards.max(1);
    (0..n)
        .map(|i| NodeInfo {
            node_id: i as u32,
            host: config.listen.ip().to_string(),
            port: config
                .shard_addr(i)
                .map_or(config.listen.port(), |a| a.port()),
            shard: i,
        })
        .collect()
}

/// The Kafka listener's brokers: one per shard at its own Kafka
/// port. Without per-shard ports, one broker (node 0) leads every
/// partition: librdkafka (2.0.2, seen with kcat) knows brokers by
/// host:port, and N node ids at one address left the partitions of
/// all but one of them without a usable leader.
fn kafka_nodes(config: &BrokerConfig) -> Vec<NodeInfo> {
    let n = config.shards.max(1);
    match config.kafka_listen {
        None => vec![],
        Some(k) if config.kafka_port_base.is_none() => vec![NodeInfo {
            node_id: 0,
            host: k.ip().to_string(),
            port: k.port(),
            shard: 0,
        }],
        Some(k) => (0..n)
            .map(|i| NodeInfo {
                node_id: i as u32,
                host: k.ip().to_string(),
                port: config.kafka_shard_addr(i).map_or(k.port(), |a| a.port()),
                shard: i,
            })
            .collect(),
    }
}

/// Waits until every shard is serving (the last one's address is the
/// broker's), or one failed or the stop came first: then the others are
/// stopped and joined.
fn wait_ready(
    ready_rx: &mpsc::Receiver<Result<SocketAddr, ServerError>>,
    n: u16,
    listen: SocketAddr,
    stop: &AtomicBool,
    handles: &mut Vec<rt::ExecutorHandle<Result<(), String>>>,
) -> Result<SocketAddr, ServerError> {
    let mut local_addr = listen;
    let mut pending = n;
    while pending > 0 {
        let next = match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Err(mpsc::RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => {
                return Err(ServerError::StoppedStarting);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
            Ok(r) => Ok(r),
        };
        pending -= 1;
        let failed = match next {
            Ok(Ok(addr)) => {
                local_addr = addr;
                continue;
            }
            Ok(Err(e)) => e,
            Err(()) => ServerError::Died(0),
        };
        stop.store(true, Ordering::Relaxed);
        for h in handles.drain(..) {
            let _ = h.join();
        }
        return Err(failed);
    }
    Ok(local_addr)
}

/// One shard's settings, from the broker's.
fn shard_config(id: u16, config: &BrokerConfig, nodes: Vec<NodeInfo>) -> ShardConfig {
    ShardConfig {
        shard_id: id,
        data_dir: config.data_dir.clone(),
        partition: PartitionConfig {
            fsync: config.fsync,
            tail_buffer_bytes: TAIL_BUFFER_BYTES,
            log: config.log,
            offset_holes: false,
            max_batch_bytes: config.max_batch_bytes,
            memory: crate::memory::MemoryGauge::with_metrics(
                config.memory_budget / 2,
                config.metrics.shard(id),
            ),
            metrics: config.metrics.shard(id),
            cache: crate::cache::CacheBudget::new(
                config.batch_cache_bytes as usize,
                config.metrics.shard(id),
            ),
        },
        memory_budget: config.memory_budget,
        retention_check: config.retention_check,
        cleaner_limits: config.cleaner_limits,
        cleaner_check: config.cleaner_check,
        auto_create_partitions: config.auto_create_partitions,
        num_partitions: config.num_partitions,
        group_initial_rebalance_delay: config.group_initial_rebalance_delay,
        shard_count: config.shards.max(1),
        nodes,
    }
}

/// One shard's listeners, all bound with SO_REUSEPORT.
struct Listeners {
    /// The broker's public native address, shared by every shard.
    public: rt::TcpListener,
    /// This shard's own native port: clients that know the owner of a
    /// partition (Metadata says) connect here and never cross a core.
    own: Option<rt::TcpListener>,
    /// The Kafka listener: the shared address and this shard's own port.
    kafka: Vec<rt::TcpListener>,
}

impl Listeners {
    fn bind(id: u16, config: &BrokerConfig) -> Result<Listeners, ServerError> {
        let public = rt::listen(config.listen).map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
        let own_addr = config.shard_addr(id);
        let own = match own_addr {
            None => None,
            Some(addr) => {
                Some(rt::listen(addr).map_err(|source| ServerError::Listen { addr, source })?)
            }
        };
        let mut kafka = Vec::new();
        for addr in [config.kafka_listen, config.kafka_shard_addr(id)]
            .into_iter()
            .flatten()
        {
            kafka.push(rt::listen(addr).map_err(|source| ServerError::Listen { addr, source })?);
        }
        Ok(Listeners { public, own, kafka })
    }
}

/// The stop flag is set by another thread (the signal thread): one task
/// polls it and turns it into this executor's event. The accept loops
/// wait on the event, never on a timer: glommio's accept (`collect_rw`)
/// keeps one more waker clone on every poll, so re-polling idle accepts
/// 20 times a second (the 50 ms stop check) overflowed the task's i16
/// reference count: an idle broker's shards panicked ("Waker invariant
/// broken") after about 9 minutes with three listeners.
fn stop_event(stop: Arc<AtomicBool>) -> Rc<rt::Event> {
    let stopped = Rc::new(rt::Event::default());
    let event = stopped.clone();
    rt::spawn(async move {
        wait_for_stop(&stop).await;
        event.notify_all();
    })
    .detach();
    stopped
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    id: u16,
    config: BrokerConfig,
    metas: Vec<TopicMeta>,
    nodes: Vec<NodeInfo>,
    kafka_nodes: Vec<NodeInfo>,
    mesh: rt::mesh::MeshEnd<Msg>,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<SocketAddr, ServerError>>,
    opened_barrier: Arc<std::sync::Barrier>,
) -> Result<(), String> {
    let shard_config = shard_config(id, &config, nodes);
    config
        .metrics
        .shard(id)
        .memory_budget_bytes
        .set(config.memory_budget);
    if let Some(gate) = &config.hold_recovery_until {
        while !gate.exists() && !stop.load(Ordering::Relaxed) {
            rt::sleep(Duration::from_millis(10)).await;
        }
    }
    let opened = Shard::open(shard_config, metas).await;
    // No shard listens before every shard has recovered its partitions: a
    // client must never reach a broker that cannot serve all of them yet.
    // (Blocking this thread is fine: nothing else runs on it yet.)
    opened_barrier.wait();
    let shard = match opened {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return Ok(());
        }
    };
    let Listeners { public, own, kafka } = match Listeners::bind(id, &config) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return shard.close().await;
        }
    };
    // TLS: the files are read now, so a bad certificate stops the start
    // with the reason rather than failing every handshake later.
    let tls = match (&config.tls_files, config.kafka_tls || config.native_tls) {
        (Some(files), true) => match crate::tls::Acceptor::new(
            files.clone(),
            config.tls_reload.clone(),
            config.request_read_timeout,
        ) {
            Ok(a) => Some(Rc::new(a)),
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return shard.close().await;
            }
        },
        _ => None,
    };
    // One producer-id source per shard, shared by its listeners and its
    // transaction coordinator (the shard id in the low bits keeps shards
    // apart, so two sources in one shard would repeat ids).
    let producer_ids = shard.producer_ids().clone();
    let throttle = Rc::new(crate::kafka::throttle::Throttle::default());
    let kafka_ctx = |shard_node: bool| {
        Rc::new(crate::kafka::KafkaContext {
            nodes: kafka_nodes.clone(),
            max_frame_bytes: config.max_frame_bytes,
            max_control_request_bytes: config.max_control_request_bytes,
            max_inflight: config.max_inflight_per_connection,
            shard_node,
            producer_ids: producer_ids.clone(),
            transaction_version: config.transaction_version,
            sasl: config.sasl_enabled_mechanisms.clone(),
            reauth_ms: config.connections_max_reauth_ms,
            authorizer: config
                .authorizer
                .then(|| Rc::new(config.super_users.clone())),
            throttle: throttle.clone(),
            defaults: crate::kafka::configs::TopicDefaults {
                log: config.log,
                max_batch_bytes: config.max_batch_bytes,
                auto_create_partitions: config.auto_create_partitions,
                num_partitions: config.num_partitions,
                cleaner: config.cleaner_limits,
                cleaner_check_ms: config.cleaner_check.as_millis() as u64,
                log_dir: config.data_dir.display().to_string(),
            },
        })
    };
    let local = public.local_addr().unwrap_or(config.listen);
    let router = Router::start(shard.clone(), mesh).await;
    // Transactions reach partitions on other shards through the router;
    // those left open or prepared by the last run are taken up before any
    // client is served.
    let peers: Rc<dyn crate::txn_host::TxnPeers> = router.clone();
    shard.txns().set_peers(Rc::downgrade(&peers));
    shard.txns().recover().await;
    shard.start_background();
    let _ = ready.send(Ok(local));
    let conns = Rc::new(Conns {
        open: Cell::new(0),
        stop: Rc::default(),
        closed: Rc::default(),
        budget: crate::conn::ReadBudget::new(
            config.queued_max_request_bytes,
            config.metrics.shard(id),
        ),
    });
    let kafka_tls = tls.clone().filter(|_| config.kafka_tls);
    let native = Proto::Native(tls.filter(|_| config.native_tls), throttle.clone());
    let (kafka_shared, kafka_own) = (
        Proto::Kafka(kafka_ctx(false), kafka_tls.clone()),
        Proto::Kafka(kafka_ctx(true), kafka_tls),
    );
    let stopped = stop_event(stop);
    let (r, c, st, cs) = (&router, &config, &stopped, &conns);
    futures_lite::future::zip(
        futures_lite::future::zip(
            accept_loop(r, Some(&public), c, st, cs, native.clone()),
            accept_loop(r, own.as_ref(), c, st, cs, native),
        ),
        futures_lite::future::zip(
            accept_loop(r, kafka.first(), c, st, cs, kafka_shared),
            accept_loop(r, kafka.get(1), c, st, cs, kafka_own),
        ),
    )
    .await;
    // A clean stop: no new connections (the listeners close), no new
    // requests; what is in flight is answered (waiting fetches answer at
    // once), then everything appended is flushed, fsynced and closed.
    drop(public);
    drop(own);
    drop(kafka);
    config.metrics.set_ready(false); // /healthz: 503 from now on
    tracing::info!(
        shard = id,
        connections = conns.open.get(),
        "stopping: finishing requests in flight"
    );
    shard.begin_stop();
    conns.stop_reading();
    if !conns.drained(config.drain_timeout).await {
        tracing::warn!(
            shard = id,
            connections = conns.open.get(),
            "connections still busy after {:?}; closing anyway",
            config.drain_timeout
        );
    }
    tracing::info!(shard = id, "stopping: flushing and closing partitions");
    shard.close().await
}

/// The shard's open connections: counted (for the limit and the drain),
/// told when to stop reading, and sharing the shard's read budget.
struct Conns {
    open: Cell<usize>,
    /// Told when the broker stops: readers stop taking requests.
    stop: Rc<StopSignal>,
    /// Notified whenever a connection ends.
    closed: Rc<rt::Event>,
    /// Bytes of requests being read, across the shard's connections.
    budget: Rc<crate::conn::ReadBudget>,
}

impl Conns {
    fn stop_reading(&self) {
        self.stop.stop();
    }

    /// Waits (bounded) until every connection ended.
    async fn drained(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.open.get() > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            rt::timeout(deadline - now, rt::any_notified(vec![self.closed.clone()])).await;
        }
        true
    }
}

/// Counts a connection while it lives.
struct ConnGuard(Rc<Conns>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let open = self.0.open.get();
        assert!(open > 0, "a connection ended that was never counted");
        self.0.open.set(open - 1);
        self.0.closed.notify_all();
    }
}

async fn wait_for_stop(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        rt::sleep(Duration::from_millis(50)).await;
    }
}

/// Which protocol a listener speaks.
#[derive(Clone)]
enum Proto {
    /// With TLS when the listener speaks it; the shard's client-quota
    /// sensors (the Kafka listeners' are in their context).
    Native(
        Option<Rc<crate::tls::Acceptor>>,
        Rc<crate::kafka::throttle::Throttle>,
    ),
    /// With TLS when the listener speaks it.
    Kafka(
        Rc<crate::kafka::KafkaContext>,
        Option<Rc<crate::tls::Acceptor>>,
    ),
}

async fn accept_loop(
    router: &Rc<Router>,
    listener: Option<&rt::TcpListener>,
    config: &BrokerConfig,
    stopped: &Rc<rt::Event>,
    conns: &Rc<Conns>,
    proto: Proto,
) {
    // A listener that is off: nothing to accept.
    let Some(listener) = listener else { return };
    // The authorizer checks the native listener when it knows who the
    // client is; one that authenticates no one stays the operator's,
    // unchecked (see README).
    let native_checks = (config.authorizer && config.native_authenticates())
        .then(|| Rc::new(config.super_users.clone()));
    loop {
        if stopped.generation() > 0 {
            return;
        }
        // Created before the first await: a stop notified from here on wakes it.
        let stop = rt::any_notified(vec![stopped.clone()]);
        let next = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.await;
            None
        })
        .await;
        match next {
            None => return,
            Some(Ok(mut stream)) => {
                let peer = stream.peer_addr().ok();
                let metrics = router.shard().metrics().clone();
                let listener_kind = match proto {
                    Proto::Native(..) => Listener::Native,
                    Proto::Kafka(..) => Listener::Kafka,
                };
                if conns.open.get() >= config.max_connections {
                    let max = config.max_connections;
                    metrics.connection_closed(
                        listener_kind as usize,
                        CloseReason::ConnectionLimit as usize,
                    );
                    crate::conn::log_close(
                        listener_kind,
                        CloseReason::ConnectionLimit,
                        peer,
                        &format!("refused: at the limit of {max} connections (--max-connections)"),
                    );
                    if matches!(proto, Proto::Native(None, _)) {
                        // Say why, then hang up (in its own task, so a
                        // client that does not read cannot stall accepting).
                        rt::spawn(async move {
                            let msg = format!("the broker is at its limit of {max} connections (--max-connections); try again later");
                            let frame = encode_response(&error_frame(0, ErrorCode::TooManyConnections, msg));
                            let _ = rt::timeout(Duration::from_secs(5), stream.write_all(&frame)).await;
                            let _ = stream.close().await;
                        })
                        .detach();
                    }
                    // Kafka has no way to say why: hang up.
                    continue;
                }
                conns.open.set(conns.open.get() + 1);
                metrics.connections.add(1);
                let guard = ConnGuard(conns.clone());
                let router = router.clone();
                let native_sasl = config.native_sasl_enabled_mechanisms.clone();
                let native_authz = native_checks.clone();
                let limits = Limits {
                    max_frame_bytes: config.max_frame_bytes,
                    max_inflight: config.max_inflight_per_connection,
                    timeouts: Timeouts {
                        idle: config.connections_max_idle,
                        read: config.request_read_timeout,
                    },
                };
                let proto = proto.clone();
                rt::spawn(async move {
                    let _guard = guard;
                    let conns = _guard.0.clone();
                    let stop = conns.stop.subscribe();
                    let budget = conns.budget.clone();
                    let (reason, detail) = match proto {
                        Proto::Native(None, throttle) => {
                            let mut door = NativeDoor::new(router, &native_sasl, throttle);
                            door.authorizer = native_authz;
                            door.peer = peer;
                            conn::serve(&door, stream, budget, limits, &stop.event).await
                        }
                        Proto::Native(Some(tls), throttle) => {
                            let _ = stream.set_nodelay(true);
                            match tls.accept(stream).await {
                                Ok(s) => {
                                    let mut door = NativeDoor::new(router, &native_sasl, throttle);
                                    door.authorizer = native_authz;
                                    door.peer = peer;
                                    door.tls_principal =
                                        s.peer_certificates().and_then(|c| c.first()).and_then(
                                            |c| crate::security::principal::of_certificate(c),
                                        );
                                    conn::serve_stream(&door, s, None, budget, limits, &stop.event)
                                        .await
                                }
                                Err(e) => (CloseReason::TlsFailed, e.to_string()),
                            }
                        }
                        Proto::Kafka(ctx, None) => {
                            let door = KafkaDoor::new(router, ctx, peer);
                            conn::serve(&door, stream, budget, limits, &stop.event).await
                        }
                        Proto::Kafka(ctx, Some(tls)) => {
                            let _ = stream.set_nodelay(true);
                            match tls.accept(stream).await {
                                Ok(s) => {
                                    let mut door = KafkaDoor::new(router, ctx, peer);
                                    door.tls_principal =
                                        s.peer_certificates().and_then(|c| c.first()).and_then(
                                            |c| crate::security::principal::of_certificate(c),
                                        );
                                    conn::serve_stream(&door, s, None, budget, limits, &stop.event)
                                        .await
                                }
                                Err(e) => (CloseReason::TlsFailed, e.to_string()),
                            }
                        }
                    };
                    metrics.connection_closed(listener_kind as usize, reason as usize);
                    crate::conn::log_close(listener_kind, reason, peer, &detail);
                    metrics.connections.sub(1);
                })
                .detach();
            }
            Some(Err(e)) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("accept failed: {e}");
                rt::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
