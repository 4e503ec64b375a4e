//! The `shardlog` command line: `serve`, `topic`, `produce`, `consume`,
//! `group`, `txn`, `user`, `top`.
//!
//! The edge of the program: the only place with `anyhow` and process exit.
//! Every command exits 0 on success and non-zero with one line on stderr.

mod acl;
mod common;
mod data;
mod group;
mod quota;
mod serve;
mod topic;
mod txn;
mod user;

use anyhow::anyhow;
use clap::{Parser, Subcommand};

use shardlog::config::ServeArgs;

#[derive(Parser)]
#[command(
    name = "shardlog",
    version,
    about = "A Kafka-style log broker for one Linux host, thread-per-core on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Connect with TLS, trusting the CAs in this PEM file (a broker with
    /// `serve --native-tls on`).
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: present this PEM certificate (mTLS).
    #[arg(long, global = true, value_name = "FILE", requires = "tls_client_key")]
    tls_client_cert: Option<std::path::PathBuf>,
    /// With --tls-client-cert: its PEM private key.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_client_cert")]
    tls_client_key: Option<std::path::PathBuf>,
    /// Log in with SASL (a broker with `serve
    /// --native-sasl-enabled-mechanisms`): PLAIN, SCRAM-SHA-256 or
    /// SCRAM-SHA-512, as --sasl-username, the password from the
    /// SHARDLOG_SASL_PASSWORD environment variable.
    #[arg(
        long,
        global = true,
        value_name = "MECHANISM",
        requires = "sasl_username"
    )]
    sasl_mechanism: Option<String>,
    /// The SASL user (with --sasl-mechanism).
    #[arg(long, global = true, value_name = "USER", requires = "sasl_mechanism")]
    sasl_username: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker.
    Serve(Box<ServeArgs>),
    /// Create and list topics.
    Topic {
        #[command(subcommand)]
        command: topic::TopicCommand,
        #[command(flatten)]
        broker: common::BrokerArg,
    },
    /// Produce one message per line of stdin.
    Produce(data::ProduceArgs),
    /// Print one message value per line.
    Consume(data::ConsumeArgs),
    /// Consumer groups: list, describe (members, offsets, lag), reset offsets.
    Group {
        #[command(subcommand)]
        command: group::GroupCommand,
        #[command(flatten)]
        broker: common::BrokerArg,
    },
    /// Transactions: list, describe (Kafka's ListTransactions and
    /// DescribeTransactions).
    Txn {
        #[command(subcommand)]
        command: txn::TxnCommand,
        #[command(flatten)]
        broker: common::BrokerArg,
    },
    /// SCRAM users: add (password from stdin), list, delete (Kafka's
    /// Describe/AlterUserScramCredentials).
    User {
        #[command(subcommand)]
        command: user::UserCommand,
        #[command(flatten)]
        broker: common::BrokerArg,
    },
    /// ACLs in Kafka's model (kafka-acls.sh's options): add, list, remove;
    /// enforced by `serve --authorizer acl`.
    Acl {
        #[command(subcommand)]
        command: acl::AclCommand,
        #[command(flatten)]
        broker: common::BrokerArg,
    },
    /// Client quotas (kafka-configs.sh --entity-type users|clients): set,
    /// list; enforced per shard with Kafka's throttle.
    Quota {
        #[command(subcommand)]
        command: quota::QuotaCommand,
        #[command(flatten)]
        broker: common::BrokerArg,
    },
    /// Live per-shard view of a broker, from its /metrics.
    Top(shardlog::top::TopArgs),
}

pub fn run() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            // One line, as for every other failure.
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            std::process::exit(2);
        }
    };
    if !matches!(cli.command, Command::Serve(_)) {
        // A command piped into `head` (or anything that stops reading)
        // ends quietly when the reader goes, as Unix tools do: Rust starts
        // with SIGPIPE ignored, and `println!` then panics on the broken
        // pipe. The broker keeps ignoring it: there a peer that went is an
        // error on that connection, not the end of the process.
        // SAFETY: called before any other thread starts; SIG_DFL is a valid
        // disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Some(ca) = &cli.tls_ca {
        let tls = shardlog::client::tls::ClientTls {
            ca: ca.clone(),
            cert_key: cli.tls_client_cert.clone().zip(cli.tls_client_key.clone()),
        };
        if matches!(cli.command, Command::Serve(_)) {
            eprintln!(
                "error: --tls-ca is a client option (serve takes --tls-cert-file, --tls-key-file)"
            );
            std::process::exit(2);
        }
        if let Err(e) = shardlog::client::tls::use_tls(&tls) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    if let (Some(m), Some(user)) = (&cli.sasl_mechanism, &cli.sasl_username) {
        let fail = |msg: String| -> ! {
            eprintln!("error: {msg}");
            std::process::exit(2);
        };
        if matches!(cli.command, Command::Serve(_)) {
            fail("--sasl-mechanism is a client option (serve takes --native-sasl-enabled-mechanisms)".into());
        }
        let Some(mechanism) =
            shardlog::security::sasl::SaslMechanism::from_name(&m.to_ascii_uppercase())
        else {
            fail(format!(
                "--sasl-mechanism {m:?}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            ));
        };
        // From the environment: a flag would show in the process list.
        let Ok(password) = std::env::var("SHARDLOG_SASL_PASSWORD") else {
            fail("--sasl-mechanism needs the password in SHARDLOG_SASL_PASSWORD".into());
        };
        let login = shardlog::client::sasl::Login {
            mechanism,
            username: user.clone(),
            password,
        };
        if let Err(e) = shardlog::client::sasl::use_sasl(login) {
            fail(e);
        }
    }
    let result = match cli.command {
        Command::Serve(a) => serve::serve(*a),
        Command::Topic { command, broker } => topic::topic(command, &broker.broker),
        Command::Produce(a) => data::produce(a),
        Command::Consume(a) => data::consume(a),
        Command::Group { command, broker } => group::run(command, &broker.broker),
        Command::Txn { command, broker } => txn::run(command, &broker.broker),
        Command::User { command, broker } => user::run(command, &broker.broker),
        Command::Acl { command, broker } => acl::run(command, &broker.broker),
        Command::Quota { command, broker } => quota::run(command, &broker.broker),
        Command::Top(a) => shardlog::top::run(&a).map_err(|e| anyhow!(e)),
    };
    if let Err(e) = result {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}
