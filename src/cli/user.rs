//! The `shardlog user` commands: the broker's SCRAM users, as Kafka's
//! DescribeUserScramCredentials and AlterUserScramCredentials manage them
//! (`kafka-configs.sh --entity-type users` over the native protocol).
//!
//! The password is read from stdin (never an argument: it would show in
//! `ps` and the shell's history) and salted here, as Kafka's tools do: the
//! broker receives the salt and the salted password, never the password.

use std::io::BufRead;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;

use shardlog::client::Client;
use shardlog::security::scram::{self, Mechanism};
use shardlog::security::users::UserChange;

use super::common::json_str;

/// Random salt bytes per credential.
const SALT_BYTES: usize = 32;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user, or change its password: reads the password from the
    /// first line of stdin. Both SCRAM mechanisms by default, so PLAIN,
    /// SCRAM-SHA-256 and SCRAM-SHA-512 clients all log in.
    Add {
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512; repeatable [default: both].
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = scram::DEFAULT_ITERATIONS)]
        iterations: u32,
        /// Write the user into this data directory of a stopped broker
        /// instead of asking a running one: the first user of a listener
        /// that requires SASL (as `kafka-storage format --add-scram`).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Every user with its mechanisms and iterations (no keys).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user (all its credentials), or one mechanism's credential.
    Delete {
        name: String,
        /// Only this mechanism's credential.
        #[arg(long)]
        mechanism: Option<String>,
    },
}

fn mechanism(name: &str) -> Result<Mechanism> {
    Mechanism::from_name(name)
        .ok_or_else(|| anyhow!("{name:?} is not SCRAM-SHA-256 or SCRAM-SHA-512"))
}

fn mechanism_name(kafka_type: i8) -> String {
    Mechanism::from_kafka_type(kafka_type)
        .map_or_else(|| format!("unknown({kafka_type})"), |m| m.name().to_owned())
}

/// The first line of stdin, without its line ending.
fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_owned();
    if pw.is_empty() {
        bail!("no password on stdin (give it as the first line)");
    }
    Ok(pw)
}

/// Each user's result; the first failure is the command's error.
fn check(results: Vec<shardlog::protocol::UserResult>) -> Result<()> {
    for r in results {
        if let Some(e) = r.error {
            bail!("user {:?}: {}", r.name, e.message);
        }
    }
    Ok(())
}

/// The mechanisms asked for (both when none), iterations checked.
fn mechanisms_of(names: &[String], iterations: u32) -> Result<Vec<Mechanism>> {
    if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&iterations) {
        bail!(
            "--iterations {iterations}: must be {} to {}",
            scram::MIN_ITERATIONS,
            scram::MAX_ITERATIONS
        );
    }
    if names.is_empty() {
        return Ok(Mechanism::ALL.to_vec());
    }
    names.iter().map(|m| mechanism(m)).collect()
}

/// One credential per mechanism from the password on stdin, salted here.
fn upserts(name: &str, ms: &[Mechanism], iterations: u32) -> Result<Vec<UserChange>> {
    let password = read_password()?;
    let mut changes = Vec::new();
    for m in ms {
        let mut salt = vec![0u8; SALT_BYTES];
        getrandom::getrandom(&mut salt).map_err(|e| anyhow!("the OS's random source: {e}"))?;
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        changes.push(UserChange::Upsert {
            user: name.to_owned(),
            mechanism: m.kafka_type(),
            iterations: iterations as i32,
            salt,
            salted_password: salted,
        });
    }
    Ok(changes)
}

/// `user add --data-dir`: into a stopped broker's users file.
fn add_offline(cmd: UserCommand) -> Result<()> {
    let UserCommand::Add {
        name,
        mechanisms,
        iterations,
        data_dir: Some(dir),
    } = cmd
    else {
        unreachable!("only user add --data-dir comes here");
    };
    let ms = mechanisms_of(&mechanisms, iterations)?;
    if !dir.is_dir() {
        bail!("--data-dir {}: not a directory", dir.display());
    }
    let mut users = shardlog::storage::load_users(&dir)?;
    // The broker's own rules, as for AlterUserScramCredentials.
    let (results, _) = users.apply(&upserts(&name, &ms, iterations)?);
    for (user, r) in results {
        r.map_err(|e| anyhow!("user {user:?}: {e}"))?;
    }
    shardlog::storage::store_users(&dir, &users)?;
    let names: Vec<&str> = ms.iter().map(|m| m.name()).collect();
    println!(
        "user {name}: {} ({iterations} iterations), written to {} (the broker reads it at its start)",
        names.join(", "),
        dir.display()
    );
    Ok(())
}

pub fn run(cmd: UserCommand, broker: &str) -> Result<()> {
    if let UserCommand::Add {
        data_dir: Some(_), ..
    } = &cmd
    {
        return add_offline(cmd);
    }
    let mut c = Client::connect(broker)?;
    match cmd {
        UserCommand::Add {
            name,
            mechanisms,
            iterations,
            data_dir: _,
        } => {
            let ms = mechanisms_of(&mechanisms, iterations)?;
            let changes = upserts(&name, &ms, iterations)?;
            check(c.alter_users(changes)?)?;
            let names: Vec<&str> = ms.iter().map(|m| m.name()).collect();
            println!(
                "user {name}: {} ({iterations} iterations)",
                names.join(", ")
            );
        }
        UserCommand::List { json } => {
            let users = c.describe_users(None)?;
            if json {
                let items: Vec<String> = users
                    .iter()
                    .map(|u| {
                        let creds: Vec<String> = u
                            .credentials
                            .iter()
                            .map(|&(m, i)| {
                                format!(
                                    "{{\"mechanism\":{},\"iterations\":{i}}}",
                                    json_str(&mechanism_name(m))
                                )
                            })
                            .collect();
                        format!(
                            "{{\"name\":{},\"credentials\":[{}]}}",
                            json_str(&u.name),
                            creds.join(",")
                        )
                    })
                    .collect();
                println!("{{\"users\":[{}]}}", items.join(","));
            } else {
                println!("user\tmechanism\titerations");
                for u in users {
                    for (m, i) in u.credentials {
                        println!("{}\t{}\t{i}", u.name, mechanism_name(m));
                    }
                }
            }
        }
        UserCommand::Delete { name, mechanism: m } => {
            let types: Vec<i8> = match m {
                Some(m) => vec![mechanism(&m)?.kafka_type()],
                None => {
                    let u = c
                        .describe_users(Some(std::slice::from_ref(&name)))?
                        .into_iter()
                        .next()
                        .ok_or_else(|| anyhow!("no answer for user {name:?}"))?;
                    if let Some(e) = u.error {
                        bail!("user {name:?}: {}", e.message);
                    }
                    u.credentials.iter().map(|&(m, _)| m).collect()
                }
            };
            let changes = types
                .into_iter()
                .map(|mechanism| UserChange::Delete {
                    user: name.clone(),
                    mechanism,
                })
                .collect();
            check(c.alter_users(changes)?)?;
            println!("user {name}: deleted");
        }
    }
    Ok(())
}
