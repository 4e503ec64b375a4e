//! The `shardlog quota` commands: client quotas in Kafka's model (what
//! `kafka-configs.sh --entity-type users|clients` sets), over the native
//! protocol.
//!
//! An entity is a user, a client id, or both; `--default-user` and
//! `--default-client-id` name Kafka's default entities (`<default>`).

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};

use shardlog::client::Client;
use shardlog::security::quota::{
    Entity, Name, QuotaChange, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE,
};

use super::common::json_str;

/// Which clients a quota is for.
#[derive(Args, Clone)]
pub struct EntityArgs {
    /// The user (principal name: `alice` of User:alice).
    #[arg(long, conflicts_with = "default_user")]
    user: Option<String>,
    /// Every user without a quota of its own.
    #[arg(long)]
    default_user: bool,
    /// The client id.
    #[arg(long, conflicts_with = "default_client_id")]
    client_id: Option<String>,
    /// Every client id without a quota of its own.
    #[arg(long)]
    default_client_id: bool,
}

#[derive(Subcommand)]
pub enum QuotaCommand {
    /// Set (or remove) an entity's quotas.
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// Bytes per second the entity may produce (per shard: one shard
        /// is one Kafka broker).
        #[arg(long, value_name = "BYTES")]
        producer_byte_rate: Option<f64>,
        /// Bytes per second the entity may fetch (per shard).
        #[arg(long, value_name = "BYTES")]
        consumer_byte_rate: Option<f64>,
        /// Share of a request thread's time, percent (stored; not yet
        /// enforced).
        #[arg(long, value_name = "PERCENT")]
        request_percentage: Option<f64>,
        /// Remove this key (producer_byte_rate, consumer_byte_rate,
        /// request_percentage); repeatable.
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
    },
    /// Every entity with its quotas.
    List {
        #[arg(long)]
        json: bool,
    },
}

impl EntityArgs {
    fn entity(&self) -> Result<Entity> {
        let side = |name: &Option<String>, default: bool| match (name, default) {
            (Some(n), _) => Some(Name::Named(n.clone())),
            (None, true) => Some(Name::Default),
            (None, false) => None,
        };
        let e = Entity {
            user: side(&self.user, self.default_user),
            client_id: side(&self.client_id, self.default_client_id),
        };
        if e.user.is_none() && e.client_id.is_none() {
            bail!(
                "name the entity: --user, --default-user, --client-id and/or --default-client-id"
            );
        }
        Ok(e)
    }
}

fn side_text(n: &Option<Name>) -> String {
    match n {
        None => "-".into(),
        Some(Name::Default) => "<default>".into(),
        Some(Name::Named(s)) => s.clone(),
    }
}

pub fn run(cmd: QuotaCommand, broker: &str) -> Result<()> {
    let mut c = Client::connect(broker)?;
    match cmd {
        QuotaCommand::Set {
            entity,
            producer_byte_rate,
            consumer_byte_rate,
            request_percentage,
            remove,
        } => {
            let entity = entity.entity()?;
            let mut ops: Vec<(String, Option<f64>)> = [
                (PRODUCER_BYTE_RATE, producer_byte_rate),
                (CONSUMER_BYTE_RATE, consumer_byte_rate),
                (REQUEST_PERCENTAGE, request_percentage),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), Some(v))))
            .collect();
            ops.extend(remove.into_iter().map(|k| (k, None)));
            if ops.is_empty() {
                bail!("nothing to set: --producer-byte-rate, --consumer-byte-rate, --request-percentage or --remove KEY");
            }
            let r = c.alter_quotas(vec![QuotaChange { entity, ops }], false)?;
            if let Some(e) = r.into_iter().next().ok_or_else(|| anyhow!("no answer"))? {
                bail!("{}", e.message);
            }
            println!("quota set");
        }
        QuotaCommand::List { json } => {
            let all = c.describe_quotas()?;
            if json {
                let items: Vec<String> = all
                    .iter()
                    .map(|(e, vs)| {
                        let side = |n: &Option<Name>| match n {
                            None => "null".to_owned(),
                            Some(Name::Default) => json_str("<default>"),
                            Some(Name::Named(s)) => json_str(s),
                        };
                        let values: Vec<String> = vs
                            .iter()
                            .map(|(k, v)| format!("{}:{v}", json_str(k)))
                            .collect();
                        format!(
                            "{{\"user\":{},\"client_id\":{},\"quotas\":{{{}}}}}",
                            side(&e.user),
                            side(&e.client_id),
                            values.join(",")
                        )
                    })
                    .collect();
                println!("{{\"quotas\":[{}]}}", items.join(","));
            } else {
                println!("user\tclient-id\tkey\tvalue");
                for (e, vs) in all {
                    for (k, v) in vs {
                        println!(
                            "{}\t{}\t{k}\t{v}",
                            side_text(&e.user),
                            side_text(&e.client_id)
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
