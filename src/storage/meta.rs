//! Topic metadata on disk: `DATA/topics/<topic>/topic.meta`.
//!
//! Owns: the file format (text lines plus a CRC-32 of them), writing it
//! atomically (temp file, fsync, rename, fsync dir), and loading every topic
//! on start. Metadata is written rarely, by the one metadata writer, so plain
//! blocking std::fs is fine here: it never runs on the produce/fetch path.
//!
//! Must never: silently drop a topic whose file is corrupt (start fails with
//! the path instead).

use std::collections::BTreeMap;
use std::path::Path;

use super::{sync_dir, topic_dir, topics_dir, validate_topic_name, StorageError};

pub const META_FILE: &str = "topic.meta";
const MAGIC_LINE: &str = "shardlog-topic v1";
/// Most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    /// Owner shard of each partition, by partition id.
    pub owners: Vec<u16>,
    /// The topic's own settings (`segment.bytes`, ...), overriding the
    /// broker's defaults. Only what the creator set is stored, so a topic
    /// without an override follows a changed broker default.
    pub configs: BTreeMap<String, String>,
    /// How many shards the broker had when the owners were assigned (0:
    /// unknown); a start with another count reassigns them.
    pub shards: u16,
    /// Kafka's topic id (a random UUID, fixed at creation): Metadata v10+
    /// reports it, Fetch v13+ names topics by it. All zero only in a file
    /// written before ids existed (`load_for_shards` gives it one).
    pub id: [u8; 16],
    /// The topic was compacted at some time (it may no longer be): its
    /// partitions may have offset holes, so recovery must not read a hole
    /// as the end of the log. Set once, never cleared.
    pub offset_holes: bool,
}

/// A new random topic id (a version 4 UUID, never all zero), from the
/// kernel's random source.
pub fn new_topic_id() -> Result<[u8; 16], StorageError> {
    use std::io::Read;
    let mut id = [0u8; 16];
    let path = Path::new("/dev/urandom");
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut id))
        .map_err(|e| StorageError::io("read", path, e))?;
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(id)
}

/// A topic id as Kafka prints it (`Uuid.toString`: URL-safe base64, no
/// padding).
pub fn topic_id_string(id: &[u8; 16]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// One change IncrementalAlterConfigs (or AlterConfigs, as a set of
/// `Set`s over no overrides) makes to a topic's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// The topic overrides the key with this value.
    Set(String, String),
    /// The topic follows the broker's default again.
    Delete(String),
    /// List settings (`cleanup.policy`): items added to the effective value.
    Append(String, String),
    /// List settings: items removed from the effective value.
    Subtract(String, String),
}

/// Kafka's settings of list type among the topic settings.
const LIST_KEYS: [&str; 1] = ["cleanup.policy"];

/// A topic's overrides after `changes`, checked against the broker's
/// `defaults` as a whole (Kafka applies all of a resource's changes or
/// none). `replace`: the changes are the whole new set (AlterConfigs).
/// Err names the key and what is wrong.
pub fn alter_overrides(
    current: &BTreeMap<String, String>,
    defaults: &LogConfig,
    changes: &[ConfigChange],
    replace: bool,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = if replace {
        BTreeMap::new()
    } else {
        current.clone()
    };
    let mut seen = std::collections::BTreeSet::new();
    for c in changes {
        let key = match c {
            ConfigChange::Set(k, _)
            | ConfigChange::Delete(k)
            | ConfigChange::Append(k, _)
            | ConfigChange::Subtract(k, _) => k,
        };
        if !seen.insert(key.as_str()) {
            return Err(format!("topic config {key:?} changed twice in one request"));
        }
        if !is_topic_config(key) {
            // Names the known keys.
            LogConfig::default().set(key, "")?;
        }
        match c {
            ConfigChange::Set(k, v) => {
                out.insert(k.clone(), v.clone());
            }
            ConfigChange::Delete(k) => {
                out.remove(k);
            }
            ConfigChange::Append(k, v) | ConfigChange::Subtract(k, v) => {
                if !LIST_KEYS.contains(&k.as_str()) {
                    return Err(format!(
                        "{k}: APPEND and SUBTRACT apply to list settings only ({})",
                        LIST_KEYS.join(", ")
                    ));
                }
                let now = out
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| defaults.cleanup_policy.name().to_owned());
                let mut items: Vec<String> = now
                    .split(',')
                    .map(|i| i.trim().to_owned())
                    .filter(|i| !i.is_empty())
                    .collect();
                for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    if matches!(c, ConfigChange::Append(..)) {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_owned());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                if items.is_empty() {
                    return Err(format!("{k}: the list cannot become empty"));
                }
                out.insert(k.clone(), items.join(","));
            }
        }
    }
    defaults.with_overrides(&out)?;
    Ok(out)
}

/// A key a topic may set (one of `CONFIG_KEYS` or `FIXED_CONFIGS`).
pub fn is_topic_config(key: &str) -> bool {
    CONFIG_KEYS.contains(&key) || FIXED_CONFIGS.iter().any(|(k, _, _)| *k == key)
}

/// What happens to old data: `cleanup.policy` (a Kafka list: `delete`,
/// `compact`, or both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention (`retention.ms`, `retention.bytes`) deletes old segments.
    pub delete: bool,
    /// The cleaner keeps the newest record per key; records need a key.
    pub compact: bool,
}

impl CleanupPolicy {
    pub fn parse(v: &str) -> Result<CleanupPolicy, String> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for item in v.split(',').map(str::trim) {
            match item {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                other => {
                    return Err(format!(
                        "cleanup.policy: {other:?} is not delete or compact (a list of them: \"compact,delete\")"
                    ))
                }
            }
        }
        Ok(p)
    }

    /// As Kafka lists it.
    pub fn name(&self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// How a partition log rolls, what retention keeps and how compaction
/// cleans (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogConfig {
    /// Roll the active segment once it holds this many bytes.
    pub segment_bytes: u64,
    /// Roll the active segment once it is this old (ms since its first append).
    pub segment_ms: i64,
    /// Keep at most this many bytes per partition (whole segments); -1: no limit.
    pub retention_bytes: i64,
    /// Delete segments whose newest timestamp is older than this; -1: keep forever.
    pub retention_ms: i64,
    pub cleanup_policy: CleanupPolicy,
    /// Clean once the part not yet cleaned is at least this share of the log.
    pub min_cleanable_dirty_ratio: f64,
    /// A record stays uncompacted at least this long (ms since its timestamp).
    pub min_compaction_lag_ms: i64,
    /// A record is cleanable at the latest this long after its timestamp,
    /// whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// How long a tombstone stays readable after the cleaning that first
    /// kept it (then the next cleaning drops it).
    pub delete_retention_ms: i64,
    /// Largest run of batches one produce may bring to a partition
    /// (Kafka's largest record batch); -1: the broker's `--max-batch-bytes`,
    /// which also caps a larger value.
    pub max_message_bytes: i64,
}

/// Kafka topic settings whose one value is what shardlog does: accepted at
/// that value (Kafka Streams sets `message.timestamp.type=CreateTime` on its
/// internal topics), refused at any other, reported by DescribeConfigs.
pub const FIXED_CONFIGS: [(&str, &[&str], &str); 4] = [
    (
        "message.timestamp.type",
        &["CreateTime"],
        "records keep their producers' timestamps; LogAppendTime would rewrite batches",
    ),
    (
        "compression.type",
        &["producer"],
        "batches are stored as producers compressed them; the broker never recompresses",
    ),
    (
        "min.insync.replicas",
        &["1"],
        "shardlog is one node: one in-sync replica",
    ),
    ("unclean.leader.election.enable", &["false", "true"], ""),
];

pub const CONFIG_KEYS: [&str; 10] = [
    "segment.bytes",
    "segment.ms",
    "retention.bytes",
    "retention.ms",
    "cleanup.policy",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "delete.retention.ms",
    "max.message.bytes",
];
/// Smallest segment: one page (tests roll often; production uses the default).
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest segment: positions are u32 in the index files; keep room for a
/// whole produce past the roll point.
pub const MAX_SEGMENT_BYTES: u64 = 2 << 30;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 3600 * 1000,
            // Kafka's defaults.
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: false,
            },
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 24 * 3600 * 1000,
            max_message_bytes: -1,
        }
    }
}

impl LogConfig {
    /// Sets one key; Err names the key and what is wrong with the value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let int = |v: &str| -> Result<i64, String> {
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("{key}: {value:?} is not an integer"))
        };
        match key {
            "segment.bytes" => {
                let v = int(value)?;
                if v < MIN_SEGMENT_BYTES as i64 || v > MAX_SEGMENT_BYTES as i64 {
                    return Err(format!(
                        "segment.bytes: {v} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}"
                    ));
                }
                self.segment_bytes = v as u64;
            }
            "segment.ms" => {
                let v = int(value)?;
                if v < 1 {
                    return Err(format!("segment.ms: {v} must be at least 1"));
                }
                self.segment_ms = v;
            }
            "retention.bytes" => {
                let v = int(value)?;
                if v < -1 {
                    return Err(format!(
                        "retention.bytes: {v} must be -1 (no limit) or more"
                    ));
                }
                self.retention_bytes = v;
            }
            "retention.ms" => {
                let v = int(value)?;
                if v < -1 {
                    return Err(format!("retention.ms: {v} must be -1 (forever) or more"));
                }
                self.retention_ms = v;
            }
            "cleanup.policy" => self.cleanup_policy = CleanupPolicy::parse(value)?,
            "min.cleanable.dirty.ratio" => {
                let v: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{key}: {value:?} is not a number"))?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("{key}: {v} is outside 0..=1"));
                }
                self.min_cleanable_dirty_ratio = v;
            }
            "min.compaction.lag.ms" | "delete.retention.ms" => {
                let v = int(value)?;
                if v < 0 {
                    return Err(format!("{key}: {v} must be 0 or more"));
                }
                if key == "delete.retention.ms" {
                    self.delete_retention_ms = v;
                } else {
                    self.min_compaction_lag_ms = v;
                }
            }
            "max.compaction.lag.ms" => {
                let v = int(value)?;
                if v < 1 {
                    return Err(format!("{key}: {v} must be at least 1"));
                }
                self.max_compaction_lag_ms = v;
            }
            "max.message.bytes" => {
                let v = int(value)?;
                // One batch header at least; -1: the broker's limit.
                if v != -1 && v < 61 {
                    return Err(format!(
                        "{key}: {v} must be -1 (the broker's) or at least 61"
                    ));
                }
                self.max_message_bytes = v;
            }
            _ if FIXED_CONFIGS.iter().any(|(k, _, _)| *k == key) => {
                let (_, ok, why) = FIXED_CONFIGS
                    .iter()
                    .find(|(k, _, _)| *k == key)
                    .expect("checked above");
                if !ok.contains(&value.trim()) {
                    return Err(format!(
                        "{key}: only {} is supported ({why})",
                        ok.join(" or ")
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "unknown topic config {key:?} (known: {}, {})",
                    CONFIG_KEYS.join(", "),
                    FIXED_CONFIGS.map(|(k, _, _)| k).join(", ")
                ))
            }
        }
        Ok(())
    }

    /// These defaults with a topic's overrides applied.
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig, String> {
        let mut c = *self;
        for (k, v) in overrides {
            c.set(k, v)?;
        }
        if c.min_compaction_lag_ms > c.max_compaction_lag_ms {
            return Err(format!(
                "min.compaction.lag.ms {} is above max.compaction.lag.ms {}",
                c.min_compaction_lag_ms, c.max_compaction_lag_ms
            ));
        }
        Ok(c)
    }
}

impl TopicMeta {
    pub fn partitions(&self) -> u32 {
        self.owners.len() as u32
    }

    pub fn encode(&self) -> String {
        let mut body = format!(
            "{MAGIC_LINE}\nname={}\npartitions={}\n",
            self.name,
            self.owners.len()
        );
        for (p, o) in self.owners.iter().enumerate() {
            body.push_str(&format!("owner.{p}={o}\n"));
        }
        for (k, v) in &self.configs {
            body.push_str(&format!("config.{k}={v}\n"));
        }
        if self.shards > 0 {
            body.push_str(&format!("shards={}\n", self.shards));
        }
        if self.offset_holes {
            body.push_str("offset_holes=1\n");
        }
        if self.id != [0; 16] {
            body.push_str(&format!("id={}\n", hex(&self.id)));
        }
        let crc = crc32fast::hash(body.as_bytes());
        body.push_str(&format!("crc={crc:08x}\n"));
        body
    }

    pub fn decode(text: &str) -> Result<TopicMeta, String> {
        let (body, crc_line) = match text.trim_end_matches('\n').rsplit_once('\n') {
            Some((b, c)) => (format!("{b}\n"), c),
            None => return Err("too short".into()),
        };
        let want = crc_line.strip_prefix("crc=").ok_or("missing crc line")?;
        let got = format!("{:08x}", crc32fast::hash(body.as_bytes()));
        if want != got {
            return Err(format!(
                "checksum mismatch (file says {want}, content has {got})"
            ));
        }
        let mut lines = body.lines();
        if lines.next() != Some(MAGIC_LINE) {
            return Err("not a shardlog topic file".into());
        }
        let mut name = None;
        let mut partitions = None;
        let mut owners = Vec::new();
        let mut configs = BTreeMap::new();
        let mut shards = 0;
        let mut offset_holes = false;
        let mut id = [0u8; 16];
        for line in lines {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("bad line {line:?}"))?;
            match k {
                "name" => name = Some(v.to_owned()),
                "shards" => shards = v.parse::<u16>().map_err(|e| format!("shards: {e}"))?,
                "offset_holes" => offset_holes = v == "1",
                "id" => id = unhex(v).ok_or_else(|| format!("id: {v:?} is not 32 hex digits"))?,
                "partitions" => {
                    partitions = Some(v.parse::<u32>().map_err(|e| format!("partitions: {e}"))?)
                }
                _ if k.starts_with("owner.") => {
                    let p: usize = k[6..].parse().map_err(|e| format!("{k}: {e}"))?;
                    if p != owners.len() {
                        return Err(format!("{k} out of order"));
                    }
                    owners.push(v.parse::<u16>().map_err(|e| format!("{k}: {e}"))?);
                }
                _ if k.starts_with("config.") => {
                    let key = &k["config.".len()..];
                    LogConfig::default().set(key, v)?;
                    configs.insert(key.to_owned(), v.to_owned());
                }
                _ => return Err(format!("unknown key {k:?}")),
            }
        }
        let name = name.ok_or("missing name")?;
        let partitions = partitions.ok_or("missing partitions")?;
        if partitions as usize != owners.len() || partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(format!(
                "{partitions} partitions but {} owners",
                owners.len()
            ));
        }
        Ok(TopicMeta {
            name,
            owners,
            configs,
            shards,
            id,
            offset_holes,
        })
    }
}

/// Writes the topic's metadata file atomically and durably.
pub fn store(data_dir: &Path, meta: &TopicMeta) -> Result<(), StorageError> {
    validate_topic_name(&meta.name)?;
    let dir = topic_dir(data_dir, &meta.name);
    std::fs::create_dir_all(&dir).map_err(|e| StorageError::io("create dir", &dir, e))?;
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let path = dir.join(META_FILE);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(meta.encode().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| StorageError::io("write", &path, e))?;
    sync_dir(&dir)?;
    sync_dir(&topics_dir(data_dir))
}

/// Loads every topic and makes its owners fit `shards` shards: a topic
/// stored under another shard count gets its partitions spread again (the
/// files are per partition, so nothing moves on disk), rewritten, and a log
/// line says so. Partitions go round-robin over the shards in topic order,
/// so every shard carries about the same number.
pub fn load_for_shards(data_dir: &Path, shards: u16) -> Result<Vec<TopicMeta>, StorageError> {
    assert!(shards > 0);
    let mut metas = load_all(data_dir)?;
    let mut load = vec![0u64; shards as usize];
    for m in &metas {
        if m.shards == shards && m.owners.iter().all(|&o| o < shards) {
            for &o in &m.owners {
                load[o as usize] += 1;
            }
        }
    }
    for m in &mut metas {
        if m.id == [0; 16] {
            // Written before topic ids existed.
            m.id = new_topic_id()?;
            store(data_dir, m)?;
            tracing::info!(topic = %m.name, id = %topic_id_string(&m.id), "topic id assigned");
        }
        if m.shards == shards && m.owners.iter().all(|&o| o < shards) {
            continue;
        }
        let before = m.owners.clone();
        for o in m.owners.iter_mut() {
            *o = take_least_loaded(&mut load);
        }
        if m.shards != 0 || before.iter().any(|&o| o >= shards) {
            tracing::warn!(
                topic = %m.name,
                was = m.shards,
                now = shards,
                "shard count changed: partitions reassigned {before:?} -> {:?}",
                m.owners
            );
        }
        m.shards = shards;
        store(data_dir, m)?;
    }
    Ok(metas)
}

/// Creates the internal offsets topic (`OFFSETS_TOPIC`) on a data directory
/// that lacks it, its partitions spread over the least-loaded shards, before
/// any shard opens: every broker start finds it, so no client request ever
/// waits for its creation. Segments of 64 MiB, compacted (Kafka's
/// `__consumer_offsets` is too): each group's newest commit per partition
/// stays, and the tombstones of deleted groups go after
/// `delete.retention.ms`. An offsets topic made before compaction existed
/// (kept forever) becomes compacted here.
pub fn ensure_offsets_topic(
    data_dir: &Path,
    metas: &mut Vec<TopicMeta>,
    shards: u16,
) -> Result<(), StorageError> {
    use super::{OFFSETS_PARTITIONS, OFFSETS_TOPIC, TXN_PARTITIONS, TXN_TOPIC};
    ensure_internal_topic(data_dir, metas, shards, OFFSETS_TOPIC, OFFSETS_PARTITIONS)?;
    // The transaction log alike (Kafka's `__transaction_state` is
    // compacted too: each id's last transition stays).
    ensure_internal_topic(data_dir, metas, shards, TXN_TOPIC, TXN_PARTITIONS)
}

fn ensure_internal_topic(
    data_dir: &Path,
    metas: &mut Vec<TopicMeta>,
    shards: u16,
    name: &str,
    partitions: u32,
) -> Result<(), StorageError> {
    if let Some(m) = metas.iter_mut().find(|m| m.name == name) {
        if !m.configs.contains_key("cleanup.policy") {
            m.configs
                .insert("cleanup.policy".to_owned(), "compact".to_owned());
            store(data_dir, m)?;
            tracing::info!(topic = name, "the internal topic is now compacted");
        }
        return Ok(());
    }
    let mut load = vec![0u64; shards as usize];
    for m in metas.iter() {
        for &o in &m.owners {
            if let Some(l) = load.get_mut(o as usize) {
                *l += 1;
            }
        }
    }
    let owners = (0..partitions)
        .map(|_| take_least_loaded(&mut load))
        .collect();
    let configs = BTreeMap::from([
        ("segment.bytes".to_owned(), (64u64 << 20).to_string()),
        ("cleanup.policy".to_owned(), "compact".to_owned()),
    ]);
    let m = TopicMeta {
        name: name.to_owned(),
        owners,
        configs,
        shards,
        id: new_topic_id()?,
        offset_holes: true,
    };
    store(data_dir, &m)?;
    tracing::info!(topic = name, partitions, "created the internal topic");
    metas.push(m);
    Ok(())
}

/// The shard with the fewest partitions (ties: the lowest id), counted as
/// taking one more. The one rule for placing a partition.
pub fn take_least_loaded(load: &mut [u64]) -> u16 {
    let (s, _) = load
        .iter()
        .enumerate()
        .min_by_key(|&(i, &l)| (l, i))
        .expect("at least one shard");
    load[s] += 1;
    s as u16
}

/// `DATA/trash`: deleted topics move here (one atomic rename), then go.
pub fn trash_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("trash")
}

/// Deletes a topic's directory: renamed into the trash first, so a crash
/// midway never leaves half a topic that the next start would load, then
/// removed. The next start empties the trash.
pub fn remove(data_dir: &Path, name: &str) -> Result<(), StorageError> {
    validate_topic_name(name)?;
    let trash = trash_dir(data_dir);
    std::fs::create_dir_all(&trash).map_err(|e| StorageError::io("create dir", &trash, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let from = topic_dir(data_dir, name);
    let to = trash.join(format!("{name}.{nanos}"));
    std::fs::rename(&from, &to).map_err(|e| StorageError::io("rename", &from, e))?;
    sync_dir(&topics_dir(data_dir))?;
    std::fs::remove_dir_all(&to).map_err(|e| StorageError::io("remove", &to, e))
}

/// Removes what deletes left in the trash (a crash after the rename).
pub fn empty_trash(data_dir: &Path) -> Result<(), StorageError> {
    let trash = trash_dir(data_dir);
    match std::fs::remove_dir_all(&trash) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove", &trash, e)),
    }
}

/// Loads every topic under `DATA/topics`. A directory without a metadata file
/// is a topic whose creation did not finish: it is skipped with a warning.
pub fn load_all(data_dir: &Path) -> Result<Vec<TopicMeta>, StorageError> {
    let dir = topics_dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io("list", &dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list", &dir, e))?;
        let path = entry.path().join(META_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %entry.path().display(), "topic directory without {META_FILE}: skipped");
                continue;
            }
            Err(e) => return Err(StorageError::io("read", &path, e)),
        };
        let meta = TopicMeta::decode(&text).map_err(|detail| StorageError::Corrupt {
            path: path.clone(),
            detail,
        })?;
        if entry.file_name().to_str() != Some(meta.name.as_str()) {
            return Err(StorageError::Corrupt {
                path,
                detail: format!("names topic {:?}", meta.name),
            });
        }
        out.push(meta);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_overrides_applies_kafkas_four_operations_all_or_nothing() {
        use ConfigChange::*;
        let d = LogConfig::default();
        let now = BTreeMap::from([("retention.ms".to_owned(), "60000".to_owned())]);
        let s = |k: &str, v: &str| Set(k.into(), v.into());
        // SET adds or replaces, DELETE drops (the broker default again).
        let got = alter_overrides(
            &now,
            &d,
            &[s("segment.ms", "1000"), Delete("retention.ms".into())],
            false,
        )
        .unwrap();
        assert_eq!(
            got,
            BTreeMap::from([("segment.ms".to_owned(), "1000".to_owned())])
        );
        // APPEND/SUBTRACT work on the effective list (the default when
        // not overridden), keep it without duplicates, never empty it.
        let got = alter_overrides(
            &now,
            &d,
            &[Append("cleanup.policy".into(), "compact,delete".into())],
            false,
        )
        .unwrap();
        assert_eq!(got["cleanup.policy"], "delete,compact");
        let got2 = alter_overrides(
            &got,
            &d,
            &[Subtract("cleanup.policy".into(), "delete".into())],
            false,
        )
        .unwrap();
        assert_eq!(got2["cleanup.policy"], "compact");
        let e = alter_overrides(
            &got2,
            &d,
            &[Subtract("cleanup.policy".into(), "compact".into())],
            false,
        )
        .unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = alter_overrides(
            &now,
            &d,
            &[Append("retention.ms".into(), "1".into())],
            false,
        )
        .unwrap_err();
        assert!(e.contains("list"), "{e}");
        // One bad change fails them all; unknown keys and twice-changed keys too.
        let e = alter_overrides(
            &now,
            &d,
            &[s("segment.ms", "1000"), s("retention.ms", "soon")],
            false,
        )
        .unwrap_err();
        assert!(e.contains("retention.ms"), "{e}");
        assert!(
            alter_overrides(&now, &d, &[Delete("no.such".into())], false)
                .unwrap_err()
                .contains("unknown")
        );
        assert!(alter_overrides(
            &now,
            &d,
            &[s("segment.ms", "1"), Delete("segment.ms".into())],
            false
        )
        .is_err());
        // Checked as a whole: min lag above max lag is refused.
        let e = alter_overrides(
            &now,
            &d,
            &[
                s("min.compaction.lag.ms", "10"),
                s("max.compaction.lag.ms", "5"),
            ],
            false,
        )
        .unwrap_err();
        assert!(e.contains("above"), "{e}");
        // replace: the changes are the whole new set.
        let got = alter_overrides(&now, &d, &[s("segment.ms", "1000")], true).unwrap();
        assert_eq!(got.len(), 1);
        assert!(alter_overrides(&now, &d, &[], true).unwrap().is_empty());
    }

    #[test]
    fn topic_ids_are_random_v4_uuids_printed_as_kafka_does() {
        let a = new_topic_id().unwrap();
        let b = new_topic_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a[6] >> 4, 4, "version 4");
        assert_eq!(a[8] >> 6, 2, "RFC 4122 variant");
        // Kafka's Uuid.toString: URL-safe base64 without padding.
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(topic_id_string(&id), "AAECAwQFBgcICQoLDA0ODw");
        assert_eq!(topic_id_string(&[0xff; 16]), "_____________________w");
        // Stored in topic.meta and read back; a file without one reads as
        // all zero (load_for_shards then gives it one).
        let mut m = TopicMeta {
            name: "t".into(),
            owners: vec![0],
            configs: BTreeMap::new(),
            shards: 1,
            id,
            offset_holes: false,
        };
        assert_eq!(TopicMeta::decode(&m.encode()).unwrap().id, id);
        m.id = [0; 16];
        assert!(!m.encode().contains("id="));
        assert_eq!(TopicMeta::decode(&m.encode()).unwrap().id, [0; 16]);
    }

    #[test]
    fn offset_holes_round_trips_and_defaults_to_false() {
        let mut m = TopicMeta {
            name: "t".into(),
            owners: vec![0],
            configs: BTreeMap::new(),
            shards: 1,
            id: [0; 16],
            offset_holes: false,
        };
        assert!(!m.encode().contains("offset_holes"));
        assert!(!TopicMeta::decode(&m.encode()).unwrap().offset_holes);
        m.offset_holes = true;
        assert!(TopicMeta::decode(&m.encode()).unwrap().offset_holes);
    }

    #[test]
    fn meta_round_trips_and_detects_corruption() {
        let m = TopicMeta {
            name: "orders".into(),
            owners: vec![0, 1, 0],
            configs: BTreeMap::from([("retention.ms".to_owned(), "60000".to_owned())]),
            shards: 2,
            id: [0; 16],
            offset_holes: false,
        };
        let text = m.encode();
        assert_eq!(TopicMeta::decode(&text).unwrap(), m);
        let bad = text.replace("owner.1=1", "owner.1=0");
        assert!(TopicMeta::decode(&bad).unwrap_err().contains("checksum"));
    }

    #[test]
    fn log_config_rejects_bad_values_by_name() {
        let mut c = LogConfig::default();
        c.set("retention.bytes", "1000").unwrap();
        assert_eq!(c.retention_bytes, 1000);
        for (k, v, want) in [
            ("segment.bytes", "10", "segment.bytes"),
            ("segment.ms", "x", "not an integer"),
            ("retention.ms", "-5", "retention.ms"),
            ("cleanup.policy", "none", "not delete or compact"),
            ("compression.type", "zstd", "only producer is supported"),
            ("message.timestamp.type", "LogAppendTime", "only CreateTime"),
            ("min.insync.replicas", "2", "one node"),
            ("max.message.bytes", "12", "at least 61"),
            ("flush.messages", "1", "unknown topic config"),
        ] {
            let e = c.set(k, v).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        // The one value each fixed setting has is taken (Kafka Streams and
        // Connect set some of them on their internal topics).
        for (k, v) in [
            ("message.timestamp.type", "CreateTime"),
            ("compression.type", "producer"),
            ("min.insync.replicas", "1"),
            ("unclean.leader.election.enable", "true"),
        ] {
            c.set(k, v).unwrap();
        }
        c.set("max.message.bytes", "1048588").unwrap();
        assert_eq!(c.max_message_bytes, 1_048_588);
    }

    #[test]
    fn store_then_load_all() {
        let dir = tempfile::tempdir().unwrap();
        let a = TopicMeta {
            name: "a".into(),
            owners: vec![0; 3],
            configs: BTreeMap::new(),
            shards: 0,
            id: [0; 16],
            offset_holes: false,
        };
        let b = TopicMeta {
            name: "b".into(),
            owners: vec![0],
            configs: BTreeMap::new(),
            shards: 0,
            id: [0; 16],
            offset_holes: false,
        };
        store(dir.path(), &b).unwrap();
        store(dir.path(), &a).unwrap();
        std::fs::create_dir_all(topics_dir(dir.path()).join("half-created")).unwrap();
        assert_eq!(load_all(dir.path()).unwrap(), vec![a.clone(), b.clone()]);
        // Written before topic ids: a start gives each its own, stored, and
        // the next start keeps them.
        let started = load_for_shards(dir.path(), 1).unwrap();
        assert!(started.iter().all(|m| m.id != [0; 16]));
        assert_ne!(started[0].id, started[1].id);
        assert_eq!(load_for_shards(dir.path(), 1).unwrap(), started);
    }

    #[test]
    fn compaction_settings_take_kafkas_names_values_and_bounds() {
        let d = LogConfig::default();
        assert_eq!(d.cleanup_policy.name(), "delete");
        let over = |pairs: &[(&str, &str)]| {
            let m: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            d.with_overrides(&m)
        };
        let c = over(&[("cleanup.policy", "compact")]).unwrap();
        assert!(c.cleanup_policy.compact && !c.cleanup_policy.delete);
        for both in ["compact,delete", "delete, compact"] {
            let c = over(&[("cleanup.policy", both)]).unwrap();
            assert_eq!(c.cleanup_policy.name(), "compact,delete");
        }
        let c = over(&[
            ("min.cleanable.dirty.ratio", "0.1"),
            ("min.compaction.lag.ms", "1000"),
            ("max.compaction.lag.ms", "60000"),
            ("delete.retention.ms", "0"),
        ])
        .unwrap();
        assert_eq!(
            (
                c.min_cleanable_dirty_ratio,
                c.min_compaction_lag_ms,
                c.max_compaction_lag_ms,
                c.delete_retention_ms
            ),
            (0.1, 1000, 60000, 0)
        );
        for (k, v, says) in [
            ("cleanup.policy", "compacted", "not delete or compact"),
            ("cleanup.policy", "", "not delete or compact"),
            ("min.cleanable.dirty.ratio", "1.5", "outside 0..=1"),
            ("min.cleanable.dirty.ratio", "half", "not a number"),
            ("delete.retention.ms", "-1", "0 or more"),
            ("max.compaction.lag.ms", "0", "at least 1"),
        ] {
            let e = over(&[(k, v)]).unwrap_err();
            assert!(e.contains(k) && e.contains(says), "{k}={v}: {e}");
        }
        let e = over(&[
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "5"),
        ])
        .unwrap_err();
        assert!(e.contains("above max.compaction.lag.ms"), "{e}");
        // Stored as given, and a topic file with them loads.
        let m = TopicMeta {
            name: "changelog".into(),
            owners: vec![0],
            configs: BTreeMap::from([("cleanup.policy".into(), "compact,delete".into())]),
            shards: 1,
            id: [0; 16],
            offset_holes: false,
        };
        assert_eq!(TopicMeta::decode(&m.encode()).unwrap(), m);
    }
}
