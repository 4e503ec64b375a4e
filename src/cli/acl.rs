//! The `shardlog acl` commands: the broker's ACLs in Kafka's model, with
//! the options of Kafka's `kafka-acls.sh` (over the native protocol).
//!
//! `add` creates one binding per principal and operation on one resource;
//! `list` shows the bindings a filter selects; `remove` deletes them. The
//! broker enforces them with `serve --authorizer acl`; they may be set up
//! before it is turned on.

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};

use shardlog::client::Client;
use shardlog::security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, WILDCARD,
};

use super::common::json_str;

/// The resource a command is about (one of them; `list` may name none).
#[derive(Args, Clone, Default)]
pub struct Resource {
    /// A topic (with `--resource-pattern-type prefixed`: a topic-name prefix;
    /// `*`: every topic).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group (or prefix, or `*`).
    #[arg(long)]
    group: Option<String>,
    /// A transactional id (or prefix, or `*`).
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster (cluster operations: Alter, Describe, Create,
    /// IdempotentWrite, ...).
    #[arg(long)]
    cluster: bool,
    /// literal or prefixed (add, remove); also any or match (list,
    /// remove: match selects every binding that applies to the name)
    /// [default: literal; list: any].
    #[arg(long, value_name = "TYPE")]
    resource_pattern_type: Option<String>,
}

/// Who and what: Kafka's principals, operations and hosts.
#[derive(Args, Clone, Default)]
pub struct Grant {
    /// A principal allowed (`User:alice`, `User:*`); repeatable.
    #[arg(long = "allow-principal", value_name = "PRINCIPAL")]
    allow: Vec<String>,
    /// A principal denied (a deny wins over any allow); repeatable.
    #[arg(long = "deny-principal", value_name = "PRINCIPAL")]
    deny: Vec<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite or All; repeatable.
    #[arg(long = "operation", value_name = "OPERATION")]
    operations: Vec<String>,
    /// The client address the binding applies to [default: `*`, any].
    #[arg(long, default_value = WILDCARD)]
    host: String,
}

#[derive(Subcommand)]
pub enum AclCommand {
    /// Add bindings: each principal may (or may not) do each operation on
    /// the resource.
    Add {
        #[command(flatten)]
        resource: Resource,
        #[command(flatten)]
        grant: Grant,
    },
    /// The bindings, all or those of a resource or principal.
    List {
        #[command(flatten)]
        resource: Resource,
        /// Only this principal's bindings.
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove the bindings on the resource of the principals and operations
    /// given (none given: every binding on the resource).
    Remove {
        #[command(flatten)]
        resource: Resource,
        #[command(flatten)]
        grant: Grant,
    },
}

/// Kafka's spellings, case and underscores aside (`IdempotentWrite`,
/// `IDEMPOTENT_WRITE`, `idempotent-write`).
fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn operation(name: &str) -> Result<Operation> {
    (2..=14)
        .filter_map(Operation::from_code)
        .find(|o| norm(o.name()) == norm(name))
        .ok_or_else(|| anyhow!("{name:?} is not one of Kafka's operations (Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All)"))
}

fn pattern(name: &str) -> Result<PatternType> {
    Ok(match norm(name).as_str() {
        "literal" => PatternType::Literal,
        "prefixed" => PatternType::Prefixed,
        "any" => PatternType::Any,
        "match" => PatternType::Match,
        _ => bail!("--resource-pattern-type {name:?}: literal, prefixed, any or match"),
    })
}

fn type_name(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Topic => "Topic",
        ResourceType::Group => "Group",
        ResourceType::Cluster => "Cluster",
        ResourceType::TransactionalId => "TransactionalId",
        ResourceType::DelegationToken => "DelegationToken",
        ResourceType::User => "User",
        ResourceType::Any => "Any",
    }
}

fn pattern_name(p: PatternType) -> &'static str {
    match p {
        PatternType::Literal => "Literal",
        PatternType::Prefixed => "Prefixed",
        PatternType::Any => "Any",
        PatternType::Match => "Match",
    }
}

impl Resource {
    /// The one resource named: its type and name.
    fn named(&self) -> Result<Option<(ResourceType, String)>> {
        let mut found = Vec::new();
        if let Some(t) = &self.topic {
            found.push((ResourceType::Topic, t.clone()));
        }
        if let Some(g) = &self.group {
            found.push((ResourceType::Group, g.clone()));
        }
        if let Some(t) = &self.transactional_id {
            found.push((ResourceType::TransactionalId, t.clone()));
        }
        if self.cluster {
            found.push((ResourceType::Cluster, "kafka-cluster".to_owned()));
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => bail!("name one resource: --topic, --group, --transactional-id or --cluster"),
        }
    }

    fn pattern_or(&self, default: PatternType) -> Result<PatternType> {
        self.resource_pattern_type
            .as_deref()
            .map_or(Ok(default), pattern)
    }
}

/// (principal, permission) pairs of `--allow-principal` and `--deny-principal`.
fn principals(g: &Grant) -> Result<Vec<(String, Permission)>> {
    let all: Vec<(String, Permission)> = g
        .allow
        .iter()
        .map(|p| (p.clone(), Permission::Allow))
        .chain(g.deny.iter().map(|p| (p.clone(), Permission::Deny)))
        .collect();
    for (p, _) in &all {
        if !p.contains(':') {
            bail!("{p:?} is not a principal: TYPE:NAME, as User:alice or User:*");
        }
    }
    Ok(all)
}

fn print_list(bindings: &[AclBinding], json: bool) {
    if json {
        let items: Vec<String> = bindings
            .iter()
            .map(|b| {
                format!(
                    "{{\"resource_type\":{},\"pattern\":{},\"name\":{},\"principal\":{},\"host\":{},\"operation\":{},\"permission\":{}}}",
                    json_str(type_name(b.resource_type)),
                    json_str(pattern_name(b.pattern)),
                    json_str(&b.name),
                    json_str(&b.principal),
                    json_str(&b.host),
                    json_str(b.operation.name()),
                    json_str(if b.permission == Permission::Deny { "Deny" } else { "Allow" }),
                )
            })
            .collect();
        println!("{{\"acls\":[{}]}}", items.join(","));
    } else {
        println!("resource\tpattern\tname\tprincipal\thost\toperation\tpermission");
        for b in bindings {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                type_name(b.resource_type),
                pattern_name(b.pattern),
                b.name,
                b.principal,
                b.host,
                b.operation.name(),
                if b.permission == Permission::Deny {
                    "Deny"
                } else {
                    "Allow"
                },
            );
        }
    }
}

pub fn run(cmd: AclCommand, broker: &str) -> Result<()> {
    let mut c = Client::connect(broker)?;
    match cmd {
        AclCommand::Add { resource, grant } => {
            let (rt, name) = resource.named()?.ok_or_else(|| {
                anyhow!("name the resource: --topic, --group, --transactional-id or --cluster")
            })?;
            let pattern = resource.pattern_or(PatternType::Literal)?;
            let who = principals(&grant)?;
            if who.is_empty() || grant.operations.is_empty() {
                bail!(
                    "give at least one --allow-principal or --deny-principal and one --operation"
                );
            }
            let mut create = Vec::new();
            for (principal, permission) in &who {
                for op in &grant.operations {
                    create.push(AclBinding {
                        resource_type: rt,
                        name: name.clone(),
                        pattern,
                        principal: principal.clone(),
                        host: grant.host.clone(),
                        operation: operation(op)?,
                        permission: *permission,
                    });
                }
            }
            let results = c.alter_acls(create.clone(), vec![])?.0;
            for (b, r) in create.iter().zip(results) {
                if let Some(e) = r {
                    bail!(
                        "{} {} on {:?}: {}",
                        b.principal,
                        b.operation.name(),
                        b.name,
                        e.message
                    );
                }
            }
            print_list(&create, false);
        }
        AclCommand::List {
            resource,
            principal,
            json,
        } => {
            let named = resource.named()?;
            let filter = AclFilter {
                resource_type: named.as_ref().map_or(ResourceType::Any, |(t, _)| *t),
                name: named.map(|(_, n)| n),
                pattern: resource.pattern_or(PatternType::Any)?,
                principal,
                host: None,
                operation: Operation::Any,
                permission: Permission::Any,
            };
            print_list(&c.describe_acls(filter)?, json);
        }
        AclCommand::Remove { resource, grant } => {
            let (rt, name) = resource.named()?.ok_or_else(|| {
                anyhow!("name the resource: --topic, --group, --transactional-id or --cluster")
            })?;
            let pattern = resource.pattern_or(PatternType::Literal)?;
            let who: Vec<(Option<String>, Permission)> = match principals(&grant)? {
                w if w.is_empty() => vec![(None, Permission::Any)],
                w => w.into_iter().map(|(p, perm)| (Some(p), perm)).collect(),
            };
            let ops: Vec<Operation> = match grant.operations.is_empty() {
                true => vec![Operation::Any],
                false => grant
                    .operations
                    .iter()
                    .map(|o| operation(o))
                    .collect::<Result<_>>()?,
            };
            let host = (grant.host != WILDCARD).then(|| grant.host.clone());
            let mut delete = Vec::new();
            for (principal, permission) in &who {
                for op in &ops {
                    delete.push(AclFilter {
                        resource_type: rt,
                        name: Some(name.clone()),
                        pattern,
                        principal: principal.clone(),
                        host: host.clone(),
                        operation: *op,
                        permission: *permission,
                    });
                }
            }
            let gone: Vec<AclBinding> = c
                .alter_acls(vec![], delete)?
                .1
                .into_iter()
                .flatten()
                .collect();
            if gone.is_empty() {
                bail!("no ACL matched");
            }
            print_list(&gone, false);
        }
    }
    Ok(())
}
