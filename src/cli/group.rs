//! The `shardlog group` commands and `shardlog consume --group`: part of the
//! command line (the binary), kept out of main.rs.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;

use shardlog::client::consumer::{ConsumerError, GroupConfig, GroupConsumer, OffsetReset, Tp};
use shardlog::client::Client;
use shardlog::protocol::{
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, LIST_EARLIEST, LIST_LATEST,
};

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Every group: state, members, strategy, coordinator shard.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Members and, per partition, the owner, committed offset, log end and lag.
    Describe {
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Sets a stopped group's committed offsets (refused while it has members).
    ResetOffsets {
        group: String,
        /// earliest, latest, or an offset.
        #[arg(long)]
        to: String,
        /// Only this topic (default: every topic the group committed).
        #[arg(long)]
        topic: Option<String>,
    },
}

/// What `consume --group` needs from the consume arguments.
pub struct GroupConsume<'a> {
    pub broker: &'a str,
    pub topic: &'a str,
    pub group: &'a str,
    pub from: &'a str,
    pub max_messages: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub session_timeout_ms: u32,
    pub strategy: Option<String>,
    pub read_committed: bool,
}

/// Consumes as a member of the group; prints one value per line and
/// commits, after each write to stdout, the offsets of what it printed.
pub fn consume(a: GroupConsume) -> Result<()> {
    let mut cfg = GroupConfig::new(a.group, &[a.topic]);
    cfg.auto_commit = None;
    cfg.session_timeout_ms = a.session_timeout_ms;
    cfg.strategy = a.strategy.clone();
    cfg.read_committed = a.read_committed;
    cfg.offset_reset = match a.from {
        "earliest" => OffsetReset::Earliest,
        "latest" => OffsetReset::Latest,
        other => bail!(
            "with --group, --from is earliest or latest (where a partition without a committed offset starts), not {other:?}"
        ),
    };
    let mut c = GroupConsumer::new(a.broker, cfg)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let limit = a.max_messages.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut last_data = Instant::now();
    while printed < limit {
        let msgs = c.poll(Duration::from_millis(500))?;
        let mut done: BTreeMap<Tp, i64> = BTreeMap::new();
        for m in msgs {
            if printed >= limit {
                break;
            }
            if let Some(v) = &m.value {
                super::common::write_or_quit(&mut out, v)?;
            }
            super::common::write_or_quit(&mut out, b"\n")?;
            printed += 1;
            done.insert((m.topic.to_string(), m.partition), m.offset + 1);
        }
        if !done.is_empty() {
            super::common::flush_or_quit(&mut out)?;
            let offsets: Vec<(Tp, i64)> = done.into_iter().collect();
            match c.commit_offsets(&offsets) {
                Ok(()) => {}
                // The group moved on without this member (its session ran
                // out, the broker restarted): the next owner re-reads what
                // was printed here since the last commit. Not an error.
                Err(e) if e.is_fenced() || matches!(e, ConsumerError::NotOwned(..)) => {
                    eprintln!("warning: offsets not committed ({e}); the partitions' next owner starts from the last commit");
                }
                Err(e) => return Err(e.into()),
            }
            last_data = Instant::now();
        } else if a
            .idle_timeout_ms
            .is_some_and(|t| last_data.elapsed() >= Duration::from_millis(t))
        {
            break;
        }
    }
    super::common::flush_or_quit(&mut out)?;
    c.close()?;
    Ok(())
}

pub fn run(cmd: GroupCommand, broker: &str) -> Result<()> {
    let mut c = Client::connect(broker)?;
    match cmd {
        GroupCommand::List { json } => {
            let gs = c.list_groups()?;
            if json {
                let items: Vec<String> = gs
                    .iter()
                    .map(|g| {
                        format!(
                            "{{\"group\":{},\"state\":{},\"members\":{},\"strategy\":{},\"coordinator_shard\":{}}}",
                            super::common::json_str(&g.group),
                            super::common::json_str(&g.state),
                            g.members,
                            super::common::json_str(&g.strategy),
                            g.coordinator_shard
                        )
                    })
                    .collect();
                println!("{{\"groups\":[{}]}}", items.join(","));
            } else {
                println!("group\tstate\tmembers\tstrategy\tcoordinator_shard");
                for g in gs {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        g.group,
                        g.state,
                        g.members,
                        if g.strategy.is_empty() {
                            "-"
                        } else {
                            &g.strategy
                        },
                        g.coordinator_shard
                    );
                }
            }
        }
        GroupCommand::Describe { group, json } => describe(&mut c, &group, json)?,
        GroupCommand::ResetOffsets { group, to, topic } => {
            let topics: Vec<String> = match topic {
                Some(t) => vec![t],
                None => c
                    .fetch_offsets(&group, None)?
                    .into_iter()
                    .map(|t| t.name)
                    .collect(),
            };
            if topics.is_empty() {
                bail!("group {group} has no committed offsets; name a topic with --topic");
            }
            let mut req = OffsetCommitRequest {
                group: group.clone(),
                member_id: String::new(),
                member_epoch: -1,
                topics: Vec::new(),
            };
            let mut lines = Vec::new();
            for t in topics {
                let n = c.topic(&t)?.partitions.len() as u32;
                let mut parts = Vec::new();
                for p in 0..n {
                    let offset = match to.as_str() {
                        "earliest" => c.list_offset(&t, p, LIST_EARLIEST)?,
                        "latest" => c.list_offset(&t, p, LIST_LATEST)?,
                        o => o.parse::<i64>().ok().filter(|&o| o >= 0).ok_or_else(|| {
                            anyhow!(
                                "--to must be earliest, latest or a non-negative offset, not {o:?}"
                            )
                        })?,
                    };
                    lines.push(format!("{t}\t{p}\t{offset}"));
                    parts.push(OffsetCommitPartition {
                        partition: p,
                        offset,
                        metadata: String::new(),
                        leader_epoch: -1,
                    });
                }
                req.topics.push(OffsetCommitTopic {
                    name: t,
                    partitions: parts,
                });
            }
            c.commit_offsets(req)?;
            println!("topic\tpartition\tnew_offset");
            for l in lines {
                println!("{l}");
            }
        }
    }
    Ok(())
}

fn describe(c: &mut Client, group: &str, json: bool) -> Result<()> {
    let g = c.describe_group(group)?;
    // Owner of each partition, from the members' assignments.
    let mut owner: BTreeMap<(String, u32), String> = BTreeMap::new();
    for m in &g.members {
        for tp in &m.assignment {
            for &p in &tp.partitions {
                owner.insert((tp.topic.clone(), p), m.member_id.clone());
            }
        }
    }
    // Rows: every committed or assigned partition.
    let mut rows: BTreeMap<(String, u32), i64> = BTreeMap::new();
    for t in &g.offsets {
        for p in &t.partitions {
            rows.insert((t.name.clone(), p.partition), p.offset);
        }
    }
    for k in owner.keys() {
        rows.entry(k.clone()).or_insert(-1);
    }
    let mut table = Vec::with_capacity(rows.len());
    for ((t, p), committed) in rows {
        let end = c.list_offset(&t, p, LIST_LATEST).unwrap_or(-1);
        let lag = if committed >= 0 && end >= 0 {
            (end - committed).max(0)
        } else {
            -1
        };
        let member = owner.get(&(t.clone(), p)).cloned().unwrap_or_default();
        table.push((t, p, member, committed, end, lag));
    }
    if json {
        let members: Vec<String> =
            g.members
                .iter()
                .map(|m| {
                    format!(
                    "{{\"member_id\":{},\"client_id\":{},\"member_epoch\":{},\"partitions\":{}}}",
                    super::common::json_str(&m.member_id),
                    super::common::json_str(&m.client_id),
                    m.member_epoch,
                    m.assignment.iter().map(|t| t.partitions.len()).sum::<usize>()
                )
                })
                .collect();
        let parts: Vec<String> = table
            .iter()
            .map(|(t, p, m, c, e, l)| {
                format!(
                    "{{\"topic\":{},\"partition\":{p},\"member_id\":{},\"committed\":{c},\"log_end\":{e},\"lag\":{l}}}",
                    super::common::json_str(t),
                    super::common::json_str(m)
                )
            })
            .collect();
        println!(
            "{{\"group\":{},\"state\":{},\"group_epoch\":{},\"strategy\":{},\"coordinator_shard\":{},\"members\":[{}],\"partitions\":[{}]}}",
            super::common::json_str(&g.group),
            super::common::json_str(&g.state),
            g.group_epoch,
            super::common::json_str(&g.strategy),
            g.coordinator_shard,
            members.join(","),
            parts.join(",")
        );
        return Ok(());
    }
    println!(
        "group {}  state {}  epoch {}  strategy {}  coordinator shard {}  members {}",
        g.group,
        g.state,
        g.group_epoch,
        if g.strategy.is_empty() {
            "-"
        } else {
            &g.strategy
        },
        g.coordinator_shard,
        g.members.len()
    );
    for m in &g.members {
        println!(
            "member {}  client {}  epoch {}  partitions {}",
            m.member_id,
            m.client_id,
            m.member_epoch,
            m.assignment
                .iter()
                .map(|t| t.partitions.len())
                .sum::<usize>()
        );
    }
    println!("topic\tpartition\tmember\tcommitted\tlog_end\tlag");
    for (t, p, m, c, e, l) in table {
        println!(
            "{t}\t{p}\t{}\t{c}\t{e}\t{l}",
            if m.is_empty() { "-" } else { &m }
        );
    }
    Ok(())
}
