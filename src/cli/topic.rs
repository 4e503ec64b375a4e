//! `shardlog topic create|list|describe|delete|alter`.

use anyhow::Result;
use clap::Subcommand;

use shardlog::client::Client;
use shardlog::protocol::{ConfigOp, ConfigOpKind};
use shardlog::storage::meta::topic_id_string;

use super::common::json_str;

#[derive(Subcommand)]
pub(super) enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions (default: the broker's --num-partitions).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: Option<u32>,
        /// A topic setting overriding the broker default, KEY=VALUE
        /// (segment.bytes, segment.ms, retention.bytes, retention.ms,
        /// cleanup.policy, min.cleanable.dirty.ratio, min.compaction.lag.ms,
        /// max.compaction.lag.ms, delete.retention.ms); repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition counts.
    List {
        /// One JSON object per run: {"topics":[{"name":..,"partitions":..}]}.
        #[arg(long)]
        json: bool,
    },
    /// Show each partition's owner shard, earliest and latest offset, bytes
    /// on disk and segments, and the topic's own settings.
    Describe {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Change a live topic: grow it to more partitions (new ones go to the
    /// least-loaded shards; partitions are never removed), and/or change
    /// its settings (applied at once by the partitions' shards).
    Alter {
        name: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: Option<u32>,
        /// Set a topic setting, KEY=VALUE (names as for create); repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
        /// Drop the topic's own value of a setting: it follows the broker's
        /// default again; repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
}

pub(super) fn topic(cmd: TopicCommand, broker: &str) -> Result<()> {
    let mut c = Client::connect(broker)?;
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            configs,
        } => {
            // 0 asks for the broker's num-partitions.
            c.create_topic_with(&name, partitions.unwrap_or(0), &configs)?;
            let n = match partitions {
                Some(n) => n as usize,
                None => c.describe_topic(&name)?.partitions.len(),
            };
            println!("created topic {name} with {n} partitions");
        }
        TopicCommand::List { json } => {
            let m = c.metadata(None)?;
            if json {
                let items: Vec<String> = m
                    .topics
                    .iter()
                    .map(|t| {
                        format!(
                            "{{\"name\":{},\"partitions\":{}}}",
                            json_str(&t.name),
                            t.partitions.len()
                        )
                    })
                    .collect();
                println!("{{\"topics\":[{}]}}", items.join(","));
            } else {
                for t in m.topics {
                    println!("{}\t{}", t.name, t.partitions.len());
                }
            }
        }
        TopicCommand::Describe { name, json } => {
            let t = c.describe_topic(&name)?;
            if json {
                println!("{}", describe_json(&t));
            } else {
                let configs: Vec<String> =
                    t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "topic {}  id {}  partitions {}  configs {}",
                    t.name,
                    topic_id_string(&t.id),
                    t.partitions.len(),
                    if configs.is_empty() {
                        "(broker defaults)".to_owned()
                    } else {
                        configs.join(",")
                    }
                );
                println!("partition\towner_shard\tearliest\tlatest\tbytes\tsegments");
                for p in &t.partitions {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        p.partition,
                        p.owner_shard,
                        p.log_start_offset,
                        p.high_watermark,
                        p.size_bytes,
                        p.segments
                    );
                }
                if t.partitions.iter().any(|p| p.cleaner.is_some()) {
                    println!(
                        "partition\tcleaned_up_to\tdirty_ratio\tcleanings\tread_bytes\twritten_bytes\tlast_cleaned_ms"
                    );
                    for p in &t.partitions {
                        let Some(c) = p.cleaner else { continue };
                        println!(
                            "{}\t{}\t{:.3}\t{}\t{}\t{}\t{}",
                            p.partition,
                            c.checkpoint,
                            c.dirty_permille as f64 / 1000.0,
                            c.runs,
                            c.read_bytes,
                            c.written_bytes,
                            c.last_run_ms
                        );
                    }
                }
            }
        }
        TopicCommand::Delete { name } => {
            c.delete_topic(&name)?;
            println!("deleted topic {name}");
        }
        TopicCommand::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                anyhow::bail!("nothing to change: give --partitions, --config or --delete-config");
            }
            if let Some(n) = partitions {
                c.create_partitions(&name, n)?;
                println!("topic {name} now has {n} partitions");
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                let ops = configs
                    .into_iter()
                    .map(|(key, value)| ConfigOp {
                        key,
                        op: ConfigOpKind::Set,
                        value,
                    })
                    .chain(delete_configs.into_iter().map(|key| ConfigOp {
                        key,
                        op: ConfigOpKind::Delete,
                        value: String::new(),
                    }))
                    .collect();
                c.alter_topic_configs(&name, ops)?;
                println!("topic {name} settings changed");
            }
        }
    }
    Ok(())
}

fn describe_json(t: &shardlog::protocol::TopicDescription) -> String {
    let configs: Vec<String> = t
        .configs
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
        .collect();
    let parts: Vec<String> = t
        .partitions
        .iter()
        .map(|p| {
            let cleaner = p.cleaner.map_or(String::new(), |c| {
                format!(
                    ",\"cleaner\":{{\"cleaned_up_to\":{},\"dirty_ratio\":{:.3},\"cleanings\":{},\"read_bytes\":{},\"written_bytes\":{},\"last_cleaned_ms\":{}}}",
                    c.checkpoint,
                    c.dirty_permille as f64 / 1000.0,
                    c.runs,
                    c.read_bytes,
                    c.written_bytes,
                    c.last_run_ms
                )
            });
            format!(
                "{{\"partition\":{},\"owner_shard\":{},\"earliest_offset\":{},\"latest_offset\":{},\"size_bytes\":{},\"segments\":{}{cleaner}}}",
                p.partition, p.owner_shard, p.log_start_offset, p.high_watermark, p.size_bytes, p.segments
            )
        })
        .collect();
    format!(
        "{{\"name\":{},\"configs\":{{{}}},\"partitions\":[{}],\"id\":{}}}",
        json_str(&t.name),
        configs.join(","),
        parts.join(","),
        json_str(&topic_id_string(&t.id))
    )
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}
