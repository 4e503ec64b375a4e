//! The `shardlog txn` commands: the transactions the broker's coordinators
//! hold, as Kafka's ListTransactions and DescribeTransactions show them
//! (`kafka-transactions.sh list|describe` over the native protocol).

use anyhow::Result;
use clap::Subcommand;

use shardlog::client::Client;

use super::common::json_str;

#[derive(Subcommand)]
pub enum TxnCommand {
    /// Every transactional id: its producer id and state.
    List {
        /// Only ids in this state (Kafka's names: Empty, Ongoing,
        /// PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort,
        /// PrepareEpochFence); repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only this producer id; repeatable.
        #[arg(long = "producer-id")]
        producer_ids: Vec<i64>,
        #[arg(long)]
        json: bool,
    },
    /// One transactional id: state, producer id and epoch, timeout, when the
    /// open transaction began and its partitions.
    Describe {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: TxnCommand, broker: &str) -> Result<()> {
    let mut c = Client::connect(broker)?;
    match cmd {
        TxnCommand::List {
            states,
            producer_ids,
            json,
        } => {
            let mut ts = c.list_transactions(&states, &producer_ids)?;
            ts.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
            if json {
                let items: Vec<String> = ts
                    .iter()
                    .map(|t| {
                        format!(
                            "{{\"transactional_id\":{},\"producer_id\":{},\"state\":{}}}",
                            json_str(&t.transactional_id),
                            t.producer_id,
                            json_str(&t.state)
                        )
                    })
                    .collect();
                println!("{{\"transactions\":[{}]}}", items.join(","));
            } else {
                println!("transactional_id\tproducer_id\tstate");
                for t in ts {
                    println!("{}\t{}\t{}", t.transactional_id, t.producer_id, t.state);
                }
            }
        }
        TxnCommand::Describe { id, json } => {
            let t = c.describe_transaction(&id)?;
            let partitions: Vec<String> = t
                .topics
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(move |p| format!("{}-{p}", tp.topic))
                })
                .collect();
            if json {
                let parts: Vec<String> = partitions.iter().map(|p| json_str(p)).collect();
                println!(
                    "{{\"transactional_id\":{},\"state\":{},\"producer_id\":{},\"producer_epoch\":{},\"timeout_ms\":{},\"start_time_ms\":{},\"partitions\":[{}]}}",
                    json_str(&t.transactional_id),
                    json_str(&t.state),
                    t.producer_id,
                    t.producer_epoch,
                    t.timeout_ms,
                    t.start_time_ms,
                    parts.join(",")
                );
            } else {
                println!("transactional_id\t{}", t.transactional_id);
                println!("state\t{}", t.state);
                println!("producer_id\t{}", t.producer_id);
                println!("producer_epoch\t{}", t.producer_epoch);
                println!("timeout_ms\t{}", t.timeout_ms);
                println!("start_time_ms\t{}", t.start_time_ms);
                println!(
                    "partitions\t{}",
                    if partitions.is_empty() {
                        "-".to_owned()
                    } else {
                        partitions.join(",")
                    }
                );
            }
        }
    }
    Ok(())
}
