//! `serve` settings: one table of every setting, resolved from defaults <
//! a TOML file (`--config`) < `SHARDLOG_*` environment variables < flags,
//! then checked once and turned into a `BrokerConfig`.
//!
//! Owns: the names (kebab-case everywhere: flag `--memory-budget`, file key
//! `memory-budget`, variable `SHARDLOG_MEMORY_BUDGET`), the defaults, the
//! checks (every error names its setting and where the value came from), and
//! `--print-config` (TOML that reads back as `--config`).
//!
//! Must never: start anything. Pure over strings, files it is told to read,
//! and the environment it is handed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use thiserror::Error;

use crate::partition::FsyncPolicy;
use crate::server::BrokerConfig;
use crate::storage::meta::LogConfig;

/// How a setting's value is written in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An integer.
    Int,
    /// A string.
    Str,
    /// An integer, or the string "auto".
    IntOrAuto,
}

struct Setting {
    key: &'static str,
    kind: Kind,
    /// None: required, no default.
    default: Option<&'static str>,
    help: &'static str,
}

const fn s(key: &'static str, kind: Kind, default: &'static str, help: &'static str) -> Setting {
    Setting {
        key,
        kind,
        default: Some(default),
        help,
    }
}

/// Every `serve` setting, in `--print-config` order.
const SETTINGS: &[Setting] = &[
    Setting {
        key: "data-dir",
        kind: Kind::Str,
        default: None,
        help: "directory holding the topics (created if missing); required",
    },
    s(
        "listen",
        Kind::Str,
        "127.0.0.1:9400",
        "address every shard accepts clients on",
    ),
    s(
        "shards",
        Kind::IntOrAuto,
        "auto",
        "executors, one per CPU, pinned; auto = every CPU this process may use",
    ),
    s(
        "shard-port-base",
        Kind::IntOrAuto,
        "auto",
        "shard i also listens on this port + i; auto = listen port + 1; 0 = off",
    ),
    s(
        "kafka-listen",
        Kind::Str,
        "127.0.0.1:9092",
        "address every shard accepts Kafka clients on; off = no Kafka listener",
    ),
    s(
        "kafka-port-base",
        Kind::IntOrAuto,
        "auto",
        "shard i also accepts Kafka clients on this port + i; auto = kafka listen port + 1; 0 = off",
    ),
    s("fsync", Kind::Str, "always", "always | interval:MS | never"),
    s(
        "segment-bytes",
        Kind::Int,
        "1073741824",
        "size at which the active segment rolls (segment.bytes)",
    ),
    s(
        "segment-ms",
        Kind::Int,
        "604800000",
        "age in ms at which the active segment rolls (segment.ms)",
    ),
    s(
        "retention-bytes",
        Kind::Int,
        "-1",
        "bytes kept per partition, whole segments; -1 = no limit (retention.bytes)",
    ),
    s(
        "retention-ms",
        Kind::Int,
        "604800000",
        "age in ms after which a segment is deleted; -1 = forever (retention.ms)",
    ),
    s(
        "retention-check-ms",
        Kind::Int,
        "30000",
        "how often retention runs, in ms",
    ),
    s(
        "cleaner-io-bytes-per-sec",
        Kind::Int,
        "104857600",
        "compaction's reads and writes per shard, bytes/s; 0 = no limit (log.cleaner.io.max.bytes.per.second)",
    ),
    s(
        "cleaner-map-bytes",
        Kind::Int,
        "67108864",
        "memory for compaction's key map per shard (log.cleaner.dedupe.buffer.size)",
    ),
    s(
        "cleaner-check-ms",
        Kind::Int,
        "15000",
        "how often each shard looks for logs due for compaction (log.cleaner.backoff.ms)",
    ),
    s(
        "auto-create-topics-enable",
        Kind::Str,
        "true",
        "Metadata requests that allow it create the topics they name (auto.create.topics.enable)",
    ),
    s(
        "num-partitions",
        Kind::Int,
        "1",
        "partitions of an auto-created topic (num.partitions)",
    ),
    s(
        "group-initial-rebalance-delay-ms",
        Kind::Int,
        "3000",
        "how long a classic group's first rebalance waits for more members (group.initial.rebalance.delay.ms)",
    ),
    s(
        "transaction-version",
        Kind::Int,
        "2",
        "the transaction protocol the Kafka listener finalizes (transaction.version): 2 = KIP-890 part 2, 1 = before it",
    ),
    s(
        "sasl-enabled-mechanisms",
        Kind::Str,
        "",
        "SASL mechanisms the Kafka listener requires (sasl.enabled.mechanisms): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, comma-separated; empty = no SASL",
    ),
    s(
        "connections-max-reauth-ms",
        Kind::Int,
        "0",
        "a Kafka SASL session lasts this long; the client must re-authenticate on its connection before then or it is closed (connections.max.reauth.ms, KIP-368); 0 = sessions never expire",
    ),
    s(
        "native-sasl-enabled-mechanisms",
        Kind::Str,
        "",
        "SASL mechanisms the native listener requires (the CLI and bench log in with --sasl-mechanism): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, comma-separated; empty = no SASL",
    ),
    s(
        "authorizer",
        Kind::Str,
        "none",
        "acl = check every Kafka request against the broker's ACLs (Kafka's StandardAuthorizer; no ACL: denied); none = no checks",
    ),
    s(
        "super-users",
        Kind::Str,
        "",
        "principals the authorizer always allows (super.users), semicolon-separated: User:admin;User:ops",
    ),
    s(
        "kafka-tls",
        Kind::Str,
        "off",
        "on = the Kafka listener and its per-shard ports speak TLS (clients: security.protocol SSL or SASL_SSL); needs tls-cert-file and tls-key-file",
    ),
    s(
        "native-tls",
        Kind::Str,
        "off",
        "on = the native listener and its per-shard ports speak TLS (clients: shardlog --tls-ca FILE); needs tls-cert-file and tls-key-file",
    ),
    s(
        "http-tls",
        Kind::Str,
        "off",
        "on = the HTTP endpoint (/metrics, /healthz) speaks HTTPS with the same certificate (and client CA: mTLS); needs tls-cert-file and tls-key-file",
    ),
    s(
        "tls-cert-file",
        Kind::Str,
        "",
        "PEM certificate chain of the TLS listeners (leaf first); reloaded on SIGHUP",
    ),
    s(
        "tls-key-file",
        Kind::Str,
        "",
        "PEM private key of tls-cert-file (PKCS#8, PKCS#1 or SEC1); reloaded on SIGHUP",
    ),
    s(
        "tls-client-ca-file",
        Kind::Str,
        "",
        "PEM CAs client certificates must chain to: set, every TLS client must present one (mTLS); empty = no client certificates",
    ),
    s(
        "max-frame-bytes",
        Kind::Int,
        "67108864",
        "largest request frame accepted",
    ),
    s(
        "max-batch-bytes",
        Kind::Int,
        "16777216",
        "largest run of batches one produce may carry for one partition",
    ),
    s(
        "memory-budget",
        Kind::Int,
        "536870912",
        "bytes per shard: half tail buffers, half appended-but-unwritten data",
    ),
    s(
        "batch-cache-bytes",
        Kind::Int,
        "268435456",
        "bytes per shard of recent batches kept in memory for fetches (0: off; every read from the disk)",
    ),
    s(
        "max-connections",
        Kind::Int,
        "10000",
        "open client connections per shard",
    ),
    s(
        "max-control-request-bytes",
        Kind::Int,
        "4194304",
        "largest Kafka request other than Produce (decoded, such requests grow up to ~100x)",
    ),
    s(
        "queued-max-request-bytes",
        Kind::Int,
        "268435456",
        "bytes of requests being read per shard; past it, connections stop reading (queued.max.request.bytes)",
    ),
    s(
        "connections-max-idle-ms",
        Kind::Int,
        "600000",
        "close a connection with no request for this long (connections.max.idle.ms)",
    ),
    s(
        "request-read-timeout-ms",
        Kind::Int,
        "30000",
        "close a connection that started a request and sent nothing more for this long",
    ),
    s(
        "max-inflight-per-connection",
        Kind::Int,
        "64",
        "requests one connection may have in flight",
    ),
    s(
        "http-listen",
        Kind::Str,
        "127.0.0.1:9480",
        "address of /metrics and /healthz; off = none",
    ),
    s(
        "metrics",
        Kind::Str,
        "on",
        "on | off: collect metrics (off only to measure their cost)",
    ),
    s(
        "log-level",
        Kind::Str,
        "info",
        "a tracing filter (info, debug, shardlog=trace, ...); when not set, RUST_LOG, else info",
    ),
];

fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Where a value came from (errors say it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "the default"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(v) => write!(f, "${v}"),
            Source::Flag => write!(f, "the command line"),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("unknown setting '{key}' in {from}")]
    Unknown { key: String, from: Source },
    #[error("setting '{key}' (from {from}): {message}")]
    Bad {
        key: String,
        from: Source,
        message: String,
    },
    #[error(
        "setting 'data-dir' is required (--data-dir, SHARDLOG_DATA_DIR or data-dir in --config)"
    )]
    NoDataDir,
    #[error("unknown environment variable {var}: no setting has that name (shardlog serve --print-config lists them)")]
    UnknownEnv { var: String },
}

/// The settings as strings, each with its source, after all layers.
#[derive(Debug, Clone)]
pub struct Resolved {
    values: BTreeMap<&'static str, (String, Source)>,
}

/// The environment variable of a setting.
pub fn env_name(key: &str) -> String {
    format!("SHARDLOG_{}", key.to_uppercase().replace('-', "_"))
}

impl Resolved {
    /// Defaults, then the file, then the environment, then the flags.
    pub fn resolve(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&'static str, Option<String>)],
    ) -> Result<Resolved, ConfigError> {
        let mut values = BTreeMap::new();
        for s in SETTINGS {
            if let Some(d) = s.default {
                values.insert(s.key, (d.to_owned(), Source::Default));
            }
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            for (key, value) in parse_file(path, &text)? {
                values.insert(key, (value, Source::File(path.to_owned())));
            }
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SHARDLOG_"))
            .collect();
        env.sort();
        for (var, value) in env {
            match SETTINGS.iter().find(|s| env_name(s.key) == var) {
                Some(s) => {
                    values.insert(s.key, (value, Source::Env(var)));
                }
                // A typo (SHARDLOG_FSNYC) must not silently run with the
                // default: refused like an unknown key in the file.
                None => return Err(ConfigError::UnknownEnv { var }),
            }
        }
        for (key, value) in flags {
            let s = setting(key).expect("flags name settings");
            if let Some(v) = value {
                values.insert(s.key, (v.clone(), Source::Flag));
            }
        }
        let r = Resolved { values };
        // Check every value now, so a bad one fails at start, naming its key.
        r.check()?;
        Ok(r)
    }

    fn get(&self, key: &'static str) -> Option<&(String, Source)> {
        debug_assert!(setting(key).is_some(), "{key}");
        self.values.get(key)
    }

    fn bad(&self, key: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError::Bad {
            key: key.to_owned(),
            from: self.get(key).map_or(Source::Default, |(_, s)| s.clone()),
            message: message.into(),
        }
    }

    fn parse<T: std::str::FromStr>(&self, key: &'static str, what: &str) -> Result<T, ConfigError> {
        let (v, _) = self
            .get(key)
            .expect("every setting but data-dir has a default");
        v.trim()
            .parse()
            .map_err(|_| self.bad(key, format!("{v:?} is not {what}")))
    }

    fn auto<T: std::str::FromStr>(
        &self,
        key: &'static str,
        what: &str,
    ) -> Result<Option<T>, ConfigError> {
        let (v, _) = self.get(key).expect("has a default");
        if v.trim() == "auto" {
            return Ok(None);
        }
        self.parse(key, what).map(Some)
    }

    /// Was `key` set by the file, the environment or a flag?
    pub fn is_set(&self, key: &'static str) -> bool {
        self.get(key).is_some_and(|(_, s)| *s != Source::Default)
    }

    /// The log filter: `log-level` when set anywhere, else `RUST_LOG`, else
    /// info.
    pub fn log_filter(&self, rust_log: Option<String>) -> String {
        match (self.is_set("log-level"), rust_log) {
            (false, Some(r)) if !r.trim().is_empty() => r,
            _ => self.get("log-level").map_or("info".into(), |v| v.0.clone()),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let _ = self.settings_unchecked_data_dir()?;
        Ok(())
    }

    /// The typed settings; fails on the first bad value.
    pub fn settings(&self) -> Result<ServeSettings, ConfigError> {
        let s = self.settings_unchecked_data_dir()?;
        if s.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::NoDataDir);
        }
        Ok(s)
    }

    fn settings_unchecked_data_dir(&self) -> Result<ServeSettings, ConfigError> {
        let data_dir = self
            .get("data-dir")
            .map_or_else(PathBuf::new, |(v, _)| PathBuf::from(v));
        let listen: SocketAddr = self.parse("listen", "an address (host:port)")?;
        let shards: Option<u16> = self.auto("shards", "a number of shards or \"auto\"")?;
        if let Some(n) = shards {
            if !(1..=256).contains(&n) {
                return Err(self.bad("shards", "must be 1 to 256"));
            }
        }
        let shard_port_base: Option<u16> = self.auto("shard-port-base", "a port or \"auto\"")?;
        let (kafka_raw, _) = self.get("kafka-listen").expect("default");
        let kafka_listen = match kafka_raw.trim() {
            "off" => None,
            _ => {
                Some(self.parse::<SocketAddr>("kafka-listen", "an address (host:port) or \"off\"")?)
            }
        };
        let kafka_port_base: Option<u16> = self.auto("kafka-port-base", "a port or \"auto\"")?;
        let (fsync_raw, _) = self.get("fsync").expect("default");
        let fsync = FsyncPolicy::parse(fsync_raw.trim()).map_err(|e| self.bad("fsync", e))?;
        let mut log = LogConfig::default();
        for (key, topic_key) in [
            ("segment-bytes", "segment.bytes"),
            ("segment-ms", "segment.ms"),
            ("retention-bytes", "retention.bytes"),
            ("retention-ms", "retention.ms"),
        ] {
            let (v, _) = self.get(key).expect("default");
            log.set(topic_key, v).map_err(|e| self.bad(key, e))?;
        }
        let retention_check_ms: u64 = self.parse("retention-check-ms", "a number of ms")?;
        if retention_check_ms == 0 {
            return Err(self.bad("retention-check-ms", "must be more than 0"));
        }
        let cleaner_io_bytes_per_sec: u64 =
            self.parse("cleaner-io-bytes-per-sec", "a number of bytes per second")?;
        let cleaner_map_bytes: usize = self.parse("cleaner-map-bytes", "a number of bytes")?;
        if cleaner_map_bytes < 1 << 20 {
            return Err(self.bad("cleaner-map-bytes", "must be at least 1 MiB"));
        }
        let cleaner_check_ms: u64 = self.parse("cleaner-check-ms", "a number of ms")?;
        if cleaner_check_ms == 0 {
            return Err(self.bad("cleaner-check-ms", "must be more than 0"));
        }
        let (auto_raw, _) = self.get("auto-create-topics-enable").expect("default");
        let auto_create = match auto_raw.trim() {
            "true" | "on" => true,
            "false" | "off" => false,
            other => {
                return Err(self.bad(
                    "auto-create-topics-enable",
                    format!("{other:?} is not true or false"),
                ))
            }
        };
        let num_partitions: u32 = self.parse("num-partitions", "a number of partitions")?;
        if num_partitions == 0 || num_partitions > crate::storage::meta::MAX_PARTITIONS {
            return Err(self.bad(
                "num-partitions",
                format!("must be 1 to {}", crate::storage::meta::MAX_PARTITIONS),
            ));
        }
        let mechanisms = |key: &'static str| {
            let (raw, _) = self.get(key).expect("default");
            let mut out = Vec::new();
            for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let m = crate::security::sasl::SaslMechanism::from_name(name).ok_or_else(|| {
                    self.bad(
                        key,
                        format!("{name:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
                    )
                })?;
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            Ok::<_, ConfigError>(out)
        };
        let sasl_enabled_mechanisms = mechanisms("sasl-enabled-mechanisms")?;
        let native_sasl_enabled_mechanisms = mechanisms("native-sasl-enabled-mechanisms")?;
        let connections_max_reauth_ms: u64 = self.parse("connections-max-reauth-ms", "a number")?;
        let (authorizer_raw, _) = self.get("authorizer").expect("default");
        let authorizer = match authorizer_raw.as_str() {
            "none" => false,
            "acl" => true,
            _ => return Err(self.bad("authorizer", "must be acl or none")),
        };
        let (super_raw, _) = self.get("super-users").expect("default");
        let mut super_users = Vec::new();
        for p in super_raw
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if !p.contains(':') {
                return Err(self.bad(
                    "super-users",
                    format!("{p:?} is not a principal (User:NAME)"),
                ));
            }
            super_users.push(p.to_owned());
        }
        let (kafka_tls_raw, _) = self.get("kafka-tls").expect("default");
        let kafka_tls = match kafka_tls_raw.trim() {
            "on" | "true" => true,
            "off" | "false" => false,
            other => return Err(self.bad("kafka-tls", format!("{other:?} is not on or off"))),
        };
        let (native_tls_raw, _) = self.get("native-tls").expect("default");
        let native_tls = match native_tls_raw.trim() {
            "on" | "true" => true,
            "off" | "false" => false,
            other => return Err(self.bad("native-tls", format!("{other:?} is not on or off"))),
        };
        let (http_tls_raw, _) = self.get("http-tls").expect("default");
        let http_tls = match http_tls_raw.trim() {
            "on" | "true" => true,
            "off" | "false" => false,
            other => return Err(self.bad("http-tls", format!("{other:?} is not on or off"))),
        };
        let path = |key: &'static str| -> Option<PathBuf> {
            let (v, _) = self.get(key).expect("default");
            (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()))
        };
        let tls_files = match (path("tls-cert-file"), path("tls-key-file")) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                cert,
                key,
                client_ca: path("tls-client-ca-file"),
            }),
            (None, None) => None,
            (Some(_), None) => return Err(self.bad("tls-key-file", "needed with tls-cert-file")),
            (None, Some(_)) => return Err(self.bad("tls-cert-file", "needed with tls-key-file")),
        };
        if native_tls && tls_files.is_none() {
            return Err(self.bad("native-tls", "on needs tls-cert-file and tls-key-file"));
        }
        if kafka_tls && tls_files.is_none() {
            return Err(self.bad("kafka-tls", "on needs tls-cert-file and tls-key-file"));
        }
        if http_tls && tls_files.is_none() {
            return Err(self.bad("http-tls", "on needs tls-cert-file and tls-key-file"));
        }
        let transaction_version: i16 =
            self.parse("transaction-version", "a transaction version")?;
        if !(1..=2).contains(&transaction_version) {
            return Err(self.bad("transaction-version", "must be 1 or 2"));
        }
        let group_initial_rebalance_delay_ms: u32 = self.parse(
            "group-initial-rebalance-delay-ms",
            "a number of milliseconds",
        )?;
        if group_initial_rebalance_delay_ms > 300_000 {
            return Err(self.bad(
                "group-initial-rebalance-delay-ms",
                "must be at most 300000 (5 minutes)".to_owned(),
            ));
        }
        let max_frame_bytes: usize = self.parse("max-frame-bytes", "a number of bytes")?;
        let max_batch_bytes: usize = self.parse("max-batch-bytes", "a number of bytes")?;
        if max_batch_bytes < 61 || max_batch_bytes > max_frame_bytes {
            return Err(self.bad(
                "max-batch-bytes",
                "must be between 61 (one batch header) and max-frame-bytes",
            ));
        }
        let memory_budget: u64 = self.parse("memory-budget", "a number of bytes")?;
        if memory_budget < 2 * max_batch_bytes as u64 || memory_budget < 1 << 20 {
            return Err(self.bad(
                "memory-budget",
                "must be at least 1 MiB and twice max-batch-bytes",
            ));
        }
        let batch_cache_bytes: u64 = self.parse("batch-cache-bytes", "a number of bytes")?;
        let max_connections: usize = self.parse("max-connections", "a number")?;
        if max_connections == 0 {
            return Err(self.bad("max-connections", "must be more than 0"));
        }
        let max_control_request_bytes: usize =
            self.parse("max-control-request-bytes", "a number of bytes")?;
        // No upper bound: over max-frame-bytes the frame limit refuses first.
        if max_control_request_bytes < 64 << 10 {
            return Err(self.bad("max-control-request-bytes", "must be at least 64 KiB"));
        }
        let queued_max_request_bytes: usize =
            self.parse("queued-max-request-bytes", "a number of bytes")?;
        if queued_max_request_bytes < 1 << 20 {
            return Err(self.bad("queued-max-request-bytes", "must be at least 1 MiB"));
        }
        let connections_max_idle_ms: u64 = self.parse("connections-max-idle-ms", "a number")?;
        let request_read_timeout_ms: u64 = self.parse("request-read-timeout-ms", "a number")?;
        if connections_max_idle_ms == 0 || request_read_timeout_ms == 0 {
            return Err(self.bad(
                if connections_max_idle_ms == 0 {
                    "connections-max-idle-ms"
                } else {
                    "request-read-timeout-ms"
                },
                "must be more than 0",
            ));
        }
        let max_inflight: usize = self.parse("max-inflight-per-connection", "a number")?;
        if max_inflight == 0 {
            return Err(self.bad("max-inflight-per-connection", "must be more than 0"));
        }
        let (http_raw, _) = self.get("http-listen").expect("default");
        let http_listen = match http_raw.trim() {
            "off" => None,
            _ => {
                Some(self.parse::<SocketAddr>("http-listen", "an address (host:port) or \"off\"")?)
            }
        };
        let (m, _) = self.get("metrics").expect("default");
        let metrics = match m.trim() {
            "on" | "true" => true,
            "off" | "false" => false,
            other => return Err(self.bad("metrics", format!("{other:?} is not on or off"))),
        };
        let (level, _) = self.get("log-level").expect("default");
        if tracing_subscriber::EnvFilter::try_new(level).is_err() {
            return Err(self.bad("log-level", format!("{level:?} is not a log filter")));
        }
        Ok(ServeSettings {
            data_dir,
            listen,
            shards,
            shard_port_base,
            kafka_listen,
            kafka_port_base,
            fsync,
            log,
            retention_check_ms,
            cleaner_io_bytes_per_sec,
            cleaner_map_bytes,
            cleaner_check_ms,
            auto_create_partitions: auto_create.then_some(num_partitions),
            num_partitions,
            group_initial_rebalance_delay_ms,
            transaction_version,
            sasl_enabled_mechanisms,
            connections_max_reauth_ms,
            native_sasl_enabled_mechanisms,
            authorizer,
            super_users,
            kafka_tls,
            native_tls,
            http_tls,
            tls_files,
            max_frame_bytes,
            max_batch_bytes,
            memory_budget,
            batch_cache_bytes,
            max_connections,
            max_control_request_bytes,
            queued_max_request_bytes,
            connections_max_idle_ms,
            request_read_timeout_ms,
            max_inflight_per_connection: max_inflight,
            http_listen,
            metrics,
        })
    }

    /// Every setting with its value, as TOML that `--config` reads back;
    /// each preceded by a comment with its meaning and default.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# shardlog serve settings. Precedence: flags > SHARDLOG_* variables > this file > defaults.\n",
        );
        for s in SETTINGS {
            out.push_str(&format!(
                "\n# {} (default: {})\n",
                s.help,
                s.default
                    .map_or("none".to_owned(), |d| toml_value(s.kind, d))
            ));
            match self.get(s.key) {
                Some((v, _)) if !(s.key == "data-dir" && v.is_empty()) => {
                    out.push_str(&format!("{} = {}\n", s.key, toml_value(s.kind, v)))
                }
                _ => out.push_str(&format!("# {} = \n", s.key)),
            }
        }
        out
    }
}

fn toml_value(kind: Kind, v: &str) -> String {
    let int = v.trim().parse::<i64>().is_ok();
    match kind {
        Kind::Int | Kind::IntOrAuto if int => v.trim().to_owned(),
        // A string literal (toml's Display quotes and escapes).
        _ => toml::Value::String(v.to_owned()).to_string(),
    }
}

/// The file's settings as strings (numbers and booleans as written).
fn parse_file(
    path: &std::path::Path,
    text: &str,
) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        message: e.to_string().replace('\n', " "),
    })?;
    let mut out = Vec::new();
    for (key, value) in table {
        let Some(s) = setting(&key) else {
            return Err(ConfigError::Unknown {
                key,
                from: Source::File(path.to_owned()),
            });
        };
        let v = match value {
            toml::Value::String(v) => v,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError::Bad {
                    key,
                    from: Source::File(path.to_owned()),
                    message: format!("{other} is not a number or a string"),
                })
            }
        };
        out.push((s.key, v));
    }
    Ok(out)
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub shards: Option<u16>,
    pub shard_port_base: Option<u16>,
    pub kafka_listen: Option<SocketAddr>,
    /// `None`: auto (the Kafka listen port + 1); `Some(0)`: off.
    pub kafka_port_base: Option<u16>,
    pub fsync: FsyncPolicy,
    pub log: LogConfig,
    pub retention_check_ms: u64,
    pub cleaner_io_bytes_per_sec: u64,
    pub cleaner_map_bytes: usize,
    pub cleaner_check_ms: u64,
    /// Partitions of an auto-created topic; None: auto-creation off.
    pub auto_create_partitions: Option<u32>,
    /// Partitions of a topic created without a count (Kafka's -1).
    pub num_partitions: u32,
    /// Kafka's group.initial.rebalance.delay.ms.
    pub group_initial_rebalance_delay_ms: u32,
    /// Kafka's `transaction.version` feature level the Kafka listener
    /// finalizes (1 or 2).
    pub transaction_version: i16,
    /// SASL mechanisms the Kafka listener requires; empty: none.
    pub sasl_enabled_mechanisms: Vec<crate::security::sasl::SaslMechanism>,
    /// How long a Kafka SASL session lasts (KIP-368); 0: for ever.
    pub connections_max_reauth_ms: u64,
    /// SASL mechanisms the native listener requires; empty: none.
    pub native_sasl_enabled_mechanisms: Vec<crate::security::sasl::SaslMechanism>,
    /// Check Kafka requests against the ACLs.
    pub authorizer: bool,
    /// Principals the authorizer always allows.
    pub super_users: Vec<String>,
    /// TLS on the Kafka listener and its per-shard ports.
    pub kafka_tls: bool,
    /// TLS on the native listener and its per-shard ports.
    pub native_tls: bool,
    /// HTTPS on the HTTP endpoint.
    pub http_tls: bool,
    /// The TLS listeners' certificate, key and client CA.
    pub tls_files: Option<crate::tls::TlsFiles>,
    pub max_frame_bytes: usize,
    pub max_batch_bytes: usize,
    pub memory_budget: u64,
    pub batch_cache_bytes: u64,
    pub max_connections: usize,
    pub max_control_request_bytes: usize,
    pub queued_max_request_bytes: usize,
    pub connections_max_idle_ms: u64,
    pub request_read_timeout_ms: u64,
    pub max_inflight_per_connection: usize,
    pub http_listen: Option<SocketAddr>,
    pub metrics: bool,
}

impl ServeSettings {
    /// The broker's configuration for `shards` shards (resolved by the
    /// caller: "auto" needs the CPU list).
    pub fn broker_config(&self, shards: u16) -> Result<BrokerConfig, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Bad {
            key: key.to_owned(),
            from: Source::Default,
            message,
        };
        let mut c = BrokerConfig::new(self.data_dir.clone(), self.listen);
        c.fsync = self.fsync;
        c.shards = shards;
        c.shard_port_base = match self.shard_port_base {
            Some(0) => None,
            Some(p) => Some(p),
            None => Some(self.listen.port().checked_add(1).ok_or_else(|| {
                bad(
                    "shard-port-base",
                    format!(
                        "listen port {} leaves no room for shard ports; set shard-port-base",
                        self.listen.port()
                    ),
                )
            })?),
        };
        if let Some(base) = c.shard_port_base {
            if base as u32 + shards as u32 > 65_536 {
                return Err(bad(
                    "shard-port-base",
                    format!("{base} + {shards} shards runs past port 65535"),
                ));
            }
        }
        c.kafka_listen = self.kafka_listen;
        c.kafka_port_base = match (self.kafka_listen, self.kafka_port_base) {
            (None, _) | (_, Some(0)) => None,
            (_, Some(p)) => Some(p),
            (Some(k), None) => Some(k.port().checked_add(1).ok_or_else(|| {
                bad(
                    "kafka-port-base",
                    format!(
                        "kafka listen port {} leaves no room for shard ports; set kafka-port-base",
                        k.port()
                    ),
                )
            })?),
        };
        if let Some(base) = c.kafka_port_base {
            if base as u32 + shards as u32 > 65_536 {
                return Err(bad(
                    "kafka-port-base",
                    format!("{base} + {shards} shards runs past port 65535"),
                ));
            }
        }
        c.log = self.log;
        c.retention_check = std::time::Duration::from_millis(self.retention_check_ms);
        c.cleaner_limits = crate::storage::cleaner::Limits {
            map_bytes: self.cleaner_map_bytes,
            io_bytes_per_sec: self.cleaner_io_bytes_per_sec,
        };
        c.cleaner_check = std::time::Duration::from_millis(self.cleaner_check_ms);
        c.auto_create_partitions = self.auto_create_partitions;
        c.num_partitions = self.num_partitions;
        c.group_initial_rebalance_delay =
            std::time::Duration::from_millis(self.group_initial_rebalance_delay_ms.into());
        c.transaction_version = self.transaction_version;
        c.sasl_enabled_mechanisms = self.sasl_enabled_mechanisms.clone();
        c.connections_max_reauth_ms = self.connections_max_reauth_ms;
        c.native_sasl_enabled_mechanisms = self.native_sasl_enabled_mechanisms.clone();
        c.authorizer = self.authorizer;
        c.super_users = self.super_users.clone();
        c.kafka_tls = self.kafka_tls;
        c.native_tls = self.native_tls;
        c.tls_files = self.tls_files.clone();
        c.max_frame_bytes = self.max_frame_bytes;
        c.max_batch_bytes = self.max_batch_bytes;
        c.memory_budget = self.memory_budget;
        c.batch_cache_bytes = self.batch_cache_bytes;
        c.max_connections = self.max_connections;
        c.max_control_request_bytes = self.max_control_request_bytes;
        c.queued_max_request_bytes = self.queued_max_request_bytes;
        c.connections_max_idle = std::time::Duration::from_millis(self.connections_max_idle_ms);
        c.request_read_timeout = std::time::Duration::from_millis(self.request_read_timeout_ms);
        c.max_inflight_per_connection = self.max_inflight_per_connection;
        c.metrics = crate::metrics::Metrics::new(shards, self.metrics);
        Ok(c)
    }
}

/// `shardlog serve`'s flags: one per setting (no defaults here: an absent
/// flag leaves the value to the environment, the file or the default).
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file of settings (keys as the flags, kebab-case:
    /// `memory-budget = 1073741824`); `--print-config` writes one.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print every setting's value (after file, environment and flags) and
    /// its default as TOML, then exit.
    #[arg(long)]
    pub print_config: bool,
    /// Directory holding the topics (created if missing). Required.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Address every shard accepts clients on [default: 127.0.0.1:9400].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Number of shards: executors, each pinned to its own CPU (unpinned,
    /// with a warning, when there are more shards than CPUs) [default: auto,
    /// every CPU this process may use].
    #[arg(long, value_name = "N|auto")]
    pub shards: Option<String>,
    /// Shard i also listens on this port + i (Metadata tells clients; the
    /// bundled client connects straight to each partition's owner); 0 turns
    /// per-shard ports off [default: auto, the listen port + 1].
    #[arg(long, value_name = "PORT|auto")]
    pub shard_port_base: Option<String>,
    /// Address every shard accepts Kafka clients on (kcat, librdkafka,
    /// kafka-python, ...); `off` turns the Kafka listener off [default:
    /// 127.0.0.1:9092].
    #[arg(long, value_name = "ADDR|off")]
    pub kafka_listen: Option<String>,
    /// Shard i also accepts Kafka clients on this port + i (Kafka Metadata
    /// advertises each shard as its own broker there); 0 = off [default:
    /// auto, the Kafka listen port + 1].
    #[arg(long, value_name = "PORT|auto")]
    pub kafka_port_base: Option<String>,
    /// When appended data is fdatasync'ed: always (before a durable produce is
    /// acknowledged, with group commit), interval:MS (every MS milliseconds;
    /// durable produces are acknowledged once written), or never (only when
    /// a segment is sealed and at shutdown) [default: always].
    #[arg(long, value_name = "always|interval:MS|never")]
    pub fsync: Option<String>,
    /// Default size at which a partition's active segment rolls (topic
    /// config segment.bytes) [default: 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub segment_bytes: Option<String>,
    /// Default age in ms at which the active segment rolls (segment.ms)
    /// [default: 7 days].
    #[arg(long, value_name = "MS")]
    pub segment_ms: Option<String>,
    /// Default bytes kept per partition, whole segments; -1: no limit
    /// (retention.bytes) [default: -1].
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub retention_bytes: Option<String>,
    /// Default age in ms after which a segment is deleted, by its newest
    /// timestamp; -1: keep forever (retention.ms) [default: 7 days].
    #[arg(long, value_name = "MS", allow_hyphen_values = true)]
    pub retention_ms: Option<String>,
    /// How often retention runs, in ms [default: 30000].
    #[arg(long, value_name = "MS")]
    pub retention_check_ms: Option<String>,
    /// Compaction's reads and writes per shard, in bytes per second; 0: no
    /// limit (log.cleaner.io.max.bytes.per.second) [default: 100 MiB/s].
    #[arg(long, value_name = "BYTES")]
    pub cleaner_io_bytes_per_sec: Option<String>,
    /// Memory for compaction's key map per shard; a dirty range with more
    /// keys is cleaned in parts (log.cleaner.dedupe.buffer.size) [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub cleaner_map_bytes: Option<String>,
    /// How often each shard looks for logs due for compaction, in ms
    /// (log.cleaner.backoff.ms) [default: 15000].
    #[arg(long, value_name = "MS")]
    pub cleaner_check_ms: Option<String>,
    /// Whether Metadata requests that allow it (Kafka clients do by
    /// default) create the topics they name (auto.create.topics.enable)
    /// [default: true].
    #[arg(long, value_name = "true|false")]
    pub auto_create_topics_enable: Option<String>,
    /// Partitions of an auto-created topic (num.partitions) [default: 1].
    #[arg(long, value_name = "N")]
    pub num_partitions: Option<String>,
    /// How long a classic consumer group's first rebalance (the group was
    /// empty) waits for more members to join, extended by each newcomer up
    /// to the rebalance timeout, so a starting fleet of consumers forms one
    /// generation instead of a rebalance per member
    /// (group.initial.rebalance.delay.ms) [default: 3000].
    #[arg(long, value_name = "MS")]
    pub group_initial_rebalance_delay_ms: Option<String>,
    /// The transaction protocol the Kafka listener finalizes in ApiVersions
    /// (Kafka's `transaction.version` feature): 2 (KIP-890 part 2: Kafka 4
    /// clients add partitions implicitly on produce and every commit or
    /// abort bumps the producer epoch), or 1 to keep such clients on the
    /// older protocol [default: 2].
    #[arg(long, value_name = "1|2")]
    pub transaction_version: Option<String>,
    /// SASL mechanisms the Kafka listener requires, comma-separated:
    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (Kafka's
    /// sasl.enabled.mechanisms; users: `shardlog user add` or Kafka's
    /// AlterUserScramCredentials). A connection then authenticates before
    /// anything else [default: none: no SASL].
    #[arg(long, value_name = "MECHANISMS")]
    pub sasl_enabled_mechanisms: Option<String>,
    /// How long a SASL session on the Kafka listener lasts
    /// (connections.max.reauth.ms, KIP-368): SaslAuthenticate tells the
    /// client, which re-authenticates on its connection before then; a
    /// connection that has not is closed at its next request [default: 0:
    /// sessions never expire].
    #[arg(long, value_name = "MS")]
    pub connections_max_reauth_ms: Option<String>,
    /// SASL mechanisms the native listener (and its per-shard ports)
    /// requires, as --sasl-enabled-mechanisms; the CLI and the bench log in
    /// with `--sasl-mechanism M --sasl-username U` (password from
    /// SHARDLOG_SASL_PASSWORD) [default: none: no SASL].
    #[arg(long, value_name = "MECHANISMS")]
    pub native_sasl_enabled_mechanisms: Option<String>,
    /// `acl`: every Kafka request is checked against the broker's ACLs
    /// (Kafka's authorizer: a principal may do only what an ACL allows; a
    /// matching deny wins; ACLs with `shardlog acl` or Kafka's CreateAcls);
    /// the principal is the SASL user (`User:alice`) or `User:ANONYMOUS`
    /// without SASL [default: none: no checks].
    #[arg(long, value_name = "acl|none")]
    pub authorizer: Option<String>,
    /// Principals the authorizer always allows, semicolon-separated
    /// (Kafka's super.users): `User:admin;User:ops` [default: none].
    #[arg(long, value_name = "PRINCIPALS")]
    pub super_users: Option<String>,
    /// `on`: the Kafka listener and its per-shard ports speak TLS (clients
    /// use security.protocol SSL, or SASL_SSL with SASL); needs
    /// --tls-cert-file and --tls-key-file [default: off].
    #[arg(long, value_name = "on|off")]
    pub kafka_tls: Option<String>,
    /// `on`: the native listener and its per-shard ports speak TLS (the
    /// CLI and the bench tool connect with `--tls-ca FILE`); needs
    /// --tls-cert-file and --tls-key-file [default: off].
    #[arg(long, value_name = "on|off")]
    pub native_tls: Option<String>,
    /// `on`: the HTTP endpoint (/metrics, /healthz) speaks HTTPS with
    /// --tls-cert-file (and, with --tls-client-ca-file, asks the scraper
    /// for a client certificate) [default: off].
    #[arg(long, value_name = "on|off")]
    pub http_tls: Option<String>,
    /// PEM certificate chain of the TLS listeners, leaf first (reloaded on
    /// SIGHUP, without dropping connections).
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<String>,
    /// PEM private key of --tls-cert-file (reloaded on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<String>,
    /// PEM CAs a client certificate must chain to: every TLS client must
    /// then present one (mTLS) [default: none asked for].
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca_file: Option<String>,
    /// Largest request frame accepted, in bytes; a longer one is answered
    /// with MessageTooLarge and the connection closed [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<String>,
    /// Largest run of record batches one produce may carry for one
    /// partition, in bytes (MessageTooLarge beyond) [default: 16 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_batch_bytes: Option<String>,
    /// Memory per shard, in bytes, for tail buffers (half: 1 MiB per
    /// partition, less when many share it, 64 KiB at least) and data
    /// appended but not yet written (half: producers wait while it is full)
    /// [default: 512 MiB].
    #[arg(long, value_name = "BYTES")]
    pub memory_budget: Option<String>,
    /// Memory per shard, in bytes, for the batch cache: recent batches kept
    /// as they arrived, so consumers that keep up are served with no disk
    /// read and no copy; 0 turns it off [default: 256 MiB].
    #[arg(long, value_name = "BYTES")]
    pub batch_cache_bytes: Option<String>,
    /// Open client connections per shard; one more gets TooManyConnections
    /// [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,
    /// Largest Kafka request other than Produce, in bytes; a longer one
    /// closes the connection. Decoded, such requests take up to ~100 times
    /// their wire size; Produce keeps its records as slices of the frame
    /// and may use all of max-frame-bytes [default: 4 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_control_request_bytes: Option<String>,
    /// Bytes of requests being read that one shard holds at most; a
    /// connection whose next frame does not fit stops reading (TCP pushes
    /// back) until frames are handed on. Each connection also buffers up
    /// to 16 KiB outside it (queued.max.request.bytes) [default: 256 MiB].
    #[arg(long, value_name = "BYTES")]
    pub queued_max_request_bytes: Option<String>,
    /// Close a connection that had no request read and nothing in flight
    /// for this many ms (connections.max.idle.ms) [default: 600000].
    #[arg(long, value_name = "MS")]
    pub connections_max_idle_ms: Option<String>,
    /// Close a connection that started a request frame and then sent
    /// nothing for this many ms, freeing the frame [default: 30000].
    #[arg(long, value_name = "MS")]
    pub request_read_timeout_ms: Option<String>,
    /// Requests one connection may have in flight; the broker stops reading
    /// that connection (TCP pushes back) until one is answered [default: 64].
    #[arg(long, value_name = "N")]
    pub max_inflight_per_connection: Option<String>,
    /// Address serving Prometheus text at /metrics and readiness at
    /// /healthz; off: none [default: 127.0.0.1:9480].
    #[arg(long, value_name = "ADDR|off")]
    pub http_listen: Option<String>,
    /// Collect metrics: on or off (off only to measure what they cost)
    /// [default: on].
    #[arg(long, value_name = "on|off")]
    pub metrics: Option<String>,
    /// Log filter (error, warn, info, debug, trace, or tracing directives);
    /// when not set anywhere, RUST_LOG, else info.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Test hook: shards wait for this file to exist before recovering
    /// their logs (lets a test watch /healthz during recovery).
    #[arg(long, hide = true, value_name = "FILE")]
    pub hold_recovery_until: Option<PathBuf>,
}

impl ServeArgs {
    /// The flags given, by setting.
    pub fn flags(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("data-dir", self.data_dir.clone()),
            ("listen", self.listen.clone()),
            ("shards", self.shards.clone()),
            ("shard-port-base", self.shard_port_base.clone()),
            ("kafka-listen", self.kafka_listen.clone()),
            ("kafka-port-base", self.kafka_port_base.clone()),
            ("fsync", self.fsync.clone()),
            ("segment-bytes", self.segment_bytes.clone()),
            ("segment-ms", self.segment_ms.clone()),
            ("retention-bytes", self.retention_bytes.clone()),
            ("retention-ms", self.retention_ms.clone()),
            ("retention-check-ms", self.retention_check_ms.clone()),
            (
                "cleaner-io-bytes-per-sec",
                self.cleaner_io_bytes_per_sec.clone(),
            ),
            ("cleaner-map-bytes", self.cleaner_map_bytes.clone()),
            ("cleaner-check-ms", self.cleaner_check_ms.clone()),
            (
                "auto-create-topics-enable",
                self.auto_create_topics_enable.clone(),
            ),
            ("num-partitions", self.num_partitions.clone()),
            (
                "group-initial-rebalance-delay-ms",
                self.group_initial_rebalance_delay_ms.clone(),
            ),
            ("transaction-version", self.transaction_version.clone()),
            (
                "sasl-enabled-mechanisms",
                self.sasl_enabled_mechanisms.clone(),
            ),
            (
                "connections-max-reauth-ms",
                self.connections_max_reauth_ms.clone(),
            ),
            (
                "native-sasl-enabled-mechanisms",
                self.native_sasl_enabled_mechanisms.clone(),
            ),
            ("authorizer", self.authorizer.clone()),
            ("super-users", self.super_users.clone()),
            ("kafka-tls", self.kafka_tls.clone()),
            ("native-tls", self.native_tls.clone()),
            ("http-tls", self.http_tls.clone()),
            ("tls-cert-file", self.tls_cert_file.clone()),
            ("tls-key-file", self.tls_key_file.clone()),
            ("tls-client-ca-file", self.tls_client_ca_file.clone()),
            ("max-frame-bytes", self.max_frame_bytes.clone()),
            ("max-batch-bytes", self.max_batch_bytes.clone()),
            ("memory-budget", self.memory_budget.clone()),
            ("batch-cache-bytes", self.batch_cache_bytes.clone()),
            ("max-connections", self.max_connections.clone()),
            (
                "max-control-request-bytes",
                self.max_control_request_bytes.clone(),
            ),
            (
                "queued-max-request-bytes",
                self.queued_max_request_bytes.clone(),
            ),
            (
                "connections-max-idle-ms",
                self.connections_max_idle_ms.clone(),
            ),
            (
                "request-read-timeout-ms",
                self.request_read_timeout_ms.clone(),
            ),
            (
                "max-inflight-per-connection",
                self.max_inflight_per_connection.clone(),
            ),
            ("http-listen", self.http_listen.clone()),
            ("metrics", self.metrics.clone()),
            ("log-level", self.log_level.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (*k, Some(v.to_string())))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn every_flag_is_a_setting_and_every_setting_a_flag() {
        let a = ServeArgs::default();
        let keys: Vec<_> = a.flags().into_iter().map(|(k, _)| k).collect();
        let all: Vec<_> = SETTINGS.iter().map(|s| s.key).collect();
        assert_eq!(keys, all);
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let f = file("memory-budget = 67108864\nmax-connections = 7\nfsync = \"never\"\n");
        let env = vec![
            ("SHARDLOG_MEMORY_BUDGET".to_owned(), "134217728".to_owned()),
            ("SHARDLOG_FSYNC".to_owned(), "interval:5".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let r = Resolved::resolve(
            Some(f.path()),
            env,
            &flags(&[("data-dir", "/d"), ("fsync", "always")]),
        )
        .unwrap();
        let s = r.settings().unwrap();
        assert_eq!(s.max_connections, 7); // file
        assert_eq!(s.memory_budget, 128 << 20); // env over file
        assert_eq!(s.fsync, FsyncPolicy::Always); // flag over env
        assert_eq!(s.max_inflight_per_connection, 64); // default
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let f = file("memory-budgett = 1\n");
        let e = Resolved::resolve(Some(f.path()), vec![], &[]).unwrap_err();
        assert!(e.to_string().contains("'memory-budgett'"), "{e}");
        let e = Resolved::resolve(
            None,
            vec![("SHARDLOG_FSYNC".into(), "sometimes".into())],
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("'fsync'") && e.to_string().contains("$SHARDLOG_FSYNC"),
            "{e}"
        );
        let f = file("shards = [1]\n");
        let e = Resolved::resolve(Some(f.path()), vec![], &[]).unwrap_err();
        assert!(e.to_string().contains("'shards'"), "{e}");
        let e = Resolved::resolve(None, vec![], &flags(&[("memory-budget", "12")])).unwrap_err();
        assert!(e.to_string().contains("'memory-budget'"), "{e}");
        for bad in ["0", "3", "two"] {
            let e = Resolved::resolve(None, vec![], &flags(&[("transaction-version", bad)]))
                .and_then(|r| r.settings())
                .unwrap_err();
            assert!(
                e.to_string().contains("'transaction-version'"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn printed_config_reads_back_the_same() {
        let r = Resolved::resolve(
            None,
            vec![],
            &flags(&[
                ("data-dir", "/d \"q\""),
                ("shards", "2"),
                ("retention-ms", "-1"),
            ]),
        )
        .unwrap();
        let f = file(&r.to_toml());
        let back = Resolved::resolve(Some(f.path()), vec![], &[]).unwrap();
        assert_eq!(back.to_toml(), r.to_toml());
        let s = back.settings().unwrap();
        assert_eq!(s.shards, Some(2));
        assert_eq!(s.data_dir, PathBuf::from("/d \"q\""));
        // Without a data dir the printed file still reads back.
        let r = Resolved::resolve(None, vec![], &[]).unwrap();
        let f = file(&r.to_toml());
        assert_eq!(
            Resolved::resolve(Some(f.path()), vec![], &[])
                .unwrap()
                .settings()
                .unwrap_err(),
            ConfigError::NoDataDir
        );
    }

    #[test]
    fn log_level_when_set_beats_rust_log() {
        let r = Resolved::resolve(None, vec![], &[]).unwrap();
        assert_eq!(r.log_filter(Some("debug".into())), "debug");
        assert_eq!(r.log_filter(None), "info");
        let r = Resolved::resolve(None, vec![], &flags(&[("log-level", "warn")])).unwrap();
        assert_eq!(r.log_filter(Some("debug".into())), "warn");
    }
}
