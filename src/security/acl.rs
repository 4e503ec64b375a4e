//! Kafka's ACL model (KIP-11, prefixed patterns of KIP-290) and its
//! authorizer's rules, pure: which bindings exist, which a filter selects
//! (DescribeAcls, DeleteAcls), and whether a principal may do an operation
//! on a resource.
//!
//! Owns: the binding (resource pattern + principal, host, operation,
//! permission) and Kafka's numeric codes for each part; a filter's
//! matching; the decision (super users; a matching deny wins; then a
//! matching allow, with Kafka's implied operations; otherwise denied); the
//! set of bindings and its file format: `u16 version | u32 count | per
//! binding (u8 resource type | u8 pattern type | u16 len | name | u16 len |
//! principal | u16 len | host | u8 operation | u8 permission) | u32
//! CRC-32C`.
//!
//! Must never: allow what no allow binding grants (no ACL for a resource
//! means denied, Kafka's default), or panic on the file's bytes.

use std::collections::BTreeSet;

use bytes::{BufMut, BytesMut};
use thiserror::Error;

pub const FILE_NAME: &str = "acls";
const VERSION: u16 = 1;
/// Longest resource name, principal or host.
const MAX_FIELD_BYTES: usize = 1024;
/// Most bindings the broker holds (each is checked at every request it
/// could apply to, and the file is read whole at start).
pub const MAX_BINDINGS: usize = 100_000;

/// Kafka's ResourceType codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Any = 1,
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

/// Kafka's PatternType codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    /// Filters only: any pattern type.
    Any = 1,
    /// Filters only: every pattern that would match the name.
    Match = 2,
    Literal = 3,
    Prefixed = 4,
}

/// Kafka's AclOperation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Filters only.
    Any = 1,
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

/// Kafka's AclPermissionType codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Filters only.
    Any = 1,
    Deny = 2,
    Allow = 3,
}

macro_rules! codes {
    ($t:ty, $($v:ident),+) => {
        impl $t {
            pub fn from_code(c: i8) -> Option<$t> {
                [$(<$t>::$v),+].into_iter().find(|v| *v as i8 == c)
            }
            pub fn code(self) -> i8 {
                self as i8
            }
        }
    };
}
codes!(
    ResourceType,
    Any,
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User
);
codes!(PatternType, Any, Match, Literal, Prefixed);
codes!(
    Operation,
    Any,
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens
);
codes!(Permission, Any, Deny, Allow);

impl Operation {
    /// Kafka's names, as `shardlog acl` and the ACL docs spell them.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Any => "Any",
            Operation::All => "All",
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Create => "Create",
            Operation::Delete => "Delete",
            Operation::Alter => "Alter",
            Operation::Describe => "Describe",
            Operation::ClusterAction => "ClusterAction",
            Operation::DescribeConfigs => "DescribeConfigs",
            Operation::AlterConfigs => "AlterConfigs",
            Operation::IdempotentWrite => "IdempotentWrite",
            Operation::CreateTokens => "CreateTokens",
            Operation::DescribeTokens => "DescribeTokens",
        }
    }

    /// The operations an allow binding of `self` grants (Kafka: Read,
    /// Write, Delete and Alter imply Describe; AlterConfigs implies
    /// DescribeConfigs; All grants everything).
    fn grants(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

/// One ACL: who may (or may not) do what on which resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    /// A literal name (`*`: every resource of the type) or a prefix.
    pub name: String,
    pub pattern: PatternType,
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// A client's address, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// DescribeAcls' and DeleteAcls' filter: None fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub name: Option<String>,
    pub pattern: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    /// Matches every binding.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: ResourceType::Any,
            name: None,
            pattern: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }
}

/// A change of the ACLs, as CreateAcls and DeleteAcls ask for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclChange {
    Create(Vec<AclBinding>),
    Delete(Vec<AclFilter>),
}

/// What a change did: each binding's result (Create), or the bindings
/// each filter removed (Delete), in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclChanged {
    Created(Vec<Result<(), AclError>>),
    Deleted(Vec<Vec<AclBinding>>),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AclError {
    #[error("invalid ACL: {0}")]
    Invalid(String),
    #[error("corrupt ACL file: {0}")]
    Corrupt(String),
}

pub const WILDCARD: &str = "*";
pub const ANY_PRINCIPAL: &str = "User:*";

impl AclBinding {
    /// What a binding must be to be stored (Kafka's CreateAcls checks).
    pub fn validate(&self) -> Result<(), AclError> {
        let bad = |m: &str| Err(AclError::Invalid(m.to_owned()));
        if self.resource_type == ResourceType::Any {
            return bad("a binding names one resource type, not Any");
        }
        if !matches!(self.pattern, PatternType::Literal | PatternType::Prefixed) {
            return bad("a binding's pattern is LITERAL or PREFIXED");
        }
        if matches!(self.operation, Operation::Any) || matches!(self.permission, Permission::Any) {
            return bad("a binding names one operation and one permission, not Any");
        }
        if self.name.is_empty() {
            return bad("an empty resource name");
        }
        if self.resource_type == ResourceType::Cluster && self.name != "kafka-cluster" {
            return bad("the cluster resource is named kafka-cluster");
        }
        if !self.principal.contains(':') {
            return bad("a principal is TYPE:NAME (User:alice, User:*)");
        }
        for f in [&self.name, &self.principal, &self.host] {
            if f.len() > MAX_FIELD_BYTES || f.chars().any(char::is_control) {
                return bad("a field over 1 KiB or with control characters");
            }
        }
        Ok(())
    }

    /// Does this binding's pattern cover `name`?
    fn covers(&self, name: &str) -> bool {
        match self.pattern {
            PatternType::Literal => self.name == name || self.name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.name),
            PatternType::Any | PatternType::Match => false,
        }
    }
}

impl AclFilter {
    /// Kafka's AclBindingFilter matching.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let pattern_ok = match (self.pattern, &self.name) {
            (PatternType::Any, None) => true,
            (PatternType::Any, Some(n)) => b.name == *n,
            (PatternType::Match, None) => true,
            // Every binding that would apply to the resource named so.
            (PatternType::Match, Some(n)) => b.covers(n),
            (p, None) => b.pattern == p,
            (p, Some(n)) => b.pattern == p && b.name == *n,
        };
        (self.resource_type == ResourceType::Any || self.resource_type == b.resource_type)
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == Operation::Any || self.operation == b.operation)
            && (self.permission == Permission::Any || self.permission == b.permission)
    }
}

/// Every ACL of the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acls {
    bindings: BTreeSet<AclBinding>,
}

impl Acls {
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Adds a binding (again: no change).
    pub fn add(&mut self, b: AclBinding) -> Result<(), AclError> {
        b.validate()?;
        self.bindings.insert(b);
        Ok(())
    }

    /// The bindings `f` selects, in order.
    pub fn describe(&self, f: &AclFilter) -> Vec<AclBinding> {
        self.bindings
            .iter()
            .filter(|b| f.matches(b))
            .cloned()
            .collect()
    }

    /// Removes and returns the bindings `f` selects.
    pub fn delete(&mut self, f: &AclFilter) -> Vec<AclBinding> {
        let gone = self.describe(f);
        for b in &gone {
            self.bindings.remove(b);
        }
        gone
    }

    /// Kafka's authorizer: may `principal` (from `host`) do `op` on the
    /// resource? Super users may do anything; a matching deny wins; then a
    /// matching allow (implied operations included); else no.
    pub fn authorize(
        &self,
        super_users: &[String],
        principal: &str,
        host: &str,
        op: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        let covers = |b: &AclBinding| b.resource_type == resource && b.covers(name);
        self.decide(super_users, principal, host, op, covers, covers)
    }

    /// Kafka's authorizeByResourceType (KIP-679: an idempotent producer
    /// needs Write on some topic, or IdempotentWrite on the cluster): may
    /// `principal` do `op` on at least one resource of `resource`? Super
    /// users may; otherwise an allow binding must grant it and no deny of
    /// it may cover every name (`*`).
    pub fn allows_any(
        &self,
        super_users: &[String],
        principal: &str,
        host: &str,
        op: Operation,
        resource: ResourceType,
    ) -> bool {
        self.decide(
            super_users,
            principal,
            host,
            op,
            |b| b.resource_type == resource,
            |b| {
                b.resource_type == resource
                    && b.pattern == PatternType::Literal
                    && b.name == WILDCARD
            },
        )
    }

    /// The authorizer's rule over the bindings of `principal` and `host`:
    /// super users may; a deny of `op` (or All) among `denies` refuses; an
    /// allow granting `op` among `allows` allows; nothing: refused.
    fn decide(
        &self,
        super_users: &[String],
        principal: &str,
        host: &str,
        op: Operation,
        allows: impl Fn(&AclBinding) -> bool,
        denies: impl Fn(&AclBinding) -> bool,
    ) -> bool {
        if super_users.iter().any(|s| s == principal) {
            return true;
        }
        let mut allowed = false;
        for b in self.bindings.iter().filter(|b| {
            (b.principal == principal || b.principal == ANY_PRINCIPAL)
                && (b.host == host || b.host == WILDCARD)
        }) {
            match b.permission {
                // A deny of the operation (or of All) wins over any allow;
                // a deny of Read does not deny Describe (Kafka denies only
                // what is named).
                Permission::Deny
                    if (b.operation == op || b.operation == Operation::All) && denies(b) =>
                {
                    return false
                }
                Permission::Allow if b.operation.grants(op) && allows(b) => allowed = true,
                _ => {}
            }
        }
        allowed
    }

    /// Applies one change (CreateAcls or DeleteAcls); returns each
    /// binding's or filter's result, in request order, and whether the set
    /// changed (then it must be stored).
    pub fn apply(&mut self, change: &AclChange) -> (AclChanged, bool) {
        let before = self.bindings.len();
        match change {
            AclChange::Create(bindings) => {
                let mut added = false;
                let results = bindings
                    .iter()
                    .map(|b| {
                        b.validate()?;
                        if self.bindings.len() >= MAX_BINDINGS && !self.bindings.contains(b) {
                            return Err(AclError::Invalid(format!(
                                "the broker holds {MAX_BINDINGS} ACLs, its limit"
                            )));
                        }
                        added |= self.bindings.insert(b.clone());
                        Ok(())
                    })
                    .collect();
                (AclChanged::Created(results), added)
            }
            AclChange::Delete(filters) => {
                let gone: Vec<Vec<AclBinding>> = filters.iter().map(|f| self.delete(f)).collect();
                let changed = self.bindings.len() != before;
                (AclChanged::Deleted(gone), changed)
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = BytesMut::with_capacity(16 + self.bindings.len() * 64);
        b.put_u16(VERSION);
        b.put_u32(self.bindings.len() as u32);
        for a in &self.bindings {
            b.put_u8(a.resource_type.code() as u8);
            b.put_u8(a.pattern.code() as u8);
            for f in [&a.name, &a.principal, &a.host] {
                debug_assert!(f.len() <= MAX_FIELD_BYTES);
                b.put_u16(f.len() as u16);
                b.put_slice(f.as_bytes());
            }
            b.put_u8(a.operation.code() as u8);
            b.put_u8(a.permission.code() as u8);
        }
        super::table::seal(b)
    }

    pub fn decode(bytes: &[u8]) -> Result<Acls, AclError> {
        let corrupt = |m: &str| AclError::Corrupt(m.to_owned());
        let mut r = super::table::open(bytes, VERSION).map_err(AclError::Corrupt)?;
        let n = r.u32().map_err(AclError::Corrupt)?;
        let mut acls = Acls::default();
        for _ in 0..n {
            let mut read = || -> Result<AclBinding, super::table::Corrupt> {
                let rt = ResourceType::from_code(r.u8()? as i8).ok_or("resource type")?;
                let pt = PatternType::from_code(r.u8()? as i8).ok_or("pattern type")?;
                let (name, principal, host) = (r.str()?, r.str()?, r.str()?);
                let op = Operation::from_code(r.u8()? as i8).ok_or("operation")?;
                let perm = Permission::from_code(r.u8()? as i8).ok_or("permission")?;
                Ok(AclBinding {
                    resource_type: rt,
                    name,
                    pattern: pt,
                    principal,
                    host,
                    operation: op,
                    permission: perm,
                })
            };
            let b = read().map_err(AclError::Corrupt)?;
            b.validate().map_err(|e| corrupt(&e.to_string()))?;
            acls.bindings.insert(b);
        }
        r.finish().map_err(AclError::Corrupt)?;
        Ok(acls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(
        rt: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            name: name.into(),
            pattern,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation: op,
            permission: perm,
        }
    }

    fn can(a: &Acls, who: &str, op: Operation, rt: ResourceType, name: &str) -> bool {
        a.authorize(&["User:admin".into()], who, "10.0.0.1", op, rt, name)
    }

    #[test]
    fn kafkas_authorizer_rules() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let mut a = Acls::default();
        a.add(b(Topic, "orders", Literal, "User:alice", Write, Allow))
            .unwrap();
        a.add(b(Topic, "logs-", Prefixed, "User:alice", Read, Allow))
            .unwrap();
        a.add(b(Topic, "logs-secret", Literal, "User:alice", Read, Deny))
            .unwrap();
        a.add(b(Group, "*", Literal, "User:*", Read, Allow))
            .unwrap();
        a.add(b(Topic, "public", Literal, "User:*", All, Allow))
            .unwrap();
        a.add(b(Topic, "public", Literal, "User:mallory", Write, Deny))
            .unwrap();
        // No ACL: denied. Super users: anything.
        assert!(!can(&a, "User:bob", Read, Topic, "orders"));
        assert!(can(&a, "User:admin", Delete, Topic, "orders"));
        // Literal, with Describe implied by Write, but not Read.
        assert!(can(&a, "User:alice", Write, Topic, "orders"));
        assert!(can(&a, "User:alice", Describe, Topic, "orders"));
        assert!(!can(&a, "User:alice", Read, Topic, "orders"));
        // Prefixed; a literal deny wins over the prefixed allow.
        assert!(can(&a, "User:alice", Read, Topic, "logs-app"));
        assert!(!can(&a, "User:alice", Read, Topic, "logs-secret"));
        assert!(can(&a, "User:alice", Describe, Topic, "logs-secret"));
        assert!(!can(&a, "User:alice", Read, Topic, "log"));
        // Wildcard name and principal; All; a deny for one principal.
        assert!(can(&a, "User:bob", Read, Group, "any-group"));
        assert!(!can(&a, "User:bob", Write, Group, "any-group"));
        assert!(can(&a, "User:bob", Write, Topic, "public"));
        assert!(!can(&a, "User:mallory", Write, Topic, "public"));
        assert!(can(&a, "User:mallory", Read, Topic, "public"));
        // Hosts.
        let mut h = b(Topic, "t", Literal, "User:carol", Read, Allow);
        h.host = "10.0.0.2".into();
        a.add(h).unwrap();
        assert!(!can(&a, "User:carol", Read, Topic, "t"));
        assert!(a.authorize(&[], "User:carol", "10.0.0.2", Read, Topic, "t"));
    }

    #[test]
    fn filters_select_like_kafkas_and_deletes_remove_what_they_select() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let mut a = Acls::default();
        a.add(b(Topic, "logs-", Prefixed, "User:alice", Read, Allow))
            .unwrap();
        a.add(b(Topic, "logs-app", Literal, "User:bob", Read, Allow))
            .unwrap();
        a.add(b(Topic, "*", Literal, "User:carol", Read, Allow))
            .unwrap();
        a.add(b(Group, "g", Literal, "User:bob", Read, Allow))
            .unwrap();
        let f = |rt, name: Option<&str>, pattern, principal: Option<&str>| AclFilter {
            resource_type: rt,
            name: name.map(str::to_owned),
            pattern,
            principal: principal.map(str::to_owned),
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        assert_eq!(
            a.describe(&f(ResourceType::Any, None, PatternType::Any, None))
                .len(),
            4
        );
        // MATCH: everything that applies to topic logs-app.
        assert_eq!(
            a.describe(&f(Topic, Some("logs-app"), Match, None)).len(),
            3
        );
        assert_eq!(
            a.describe(&f(Topic, Some("logs-"), Prefixed, None)).len(),
            1
        );
        assert_eq!(
            a.describe(&f(
                ResourceType::Any,
                None,
                PatternType::Any,
                Some("User:bob")
            ))
            .len(),
            2
        );
        let gone = a.delete(&f(
            ResourceType::Any,
            None,
            PatternType::Any,
            Some("User:bob"),
        ));
        assert_eq!(gone.len(), 2);
        assert_eq!(a.len(), 2);
        // Invalid bindings are refused.
        assert!(a
            .add(b(ResourceType::Any, "x", Literal, "User:a", Read, Allow))
            .is_err());
        assert!(a.add(b(Topic, "x", Match, "User:a", Read, Allow)).is_err());
        assert!(a.add(b(Topic, "x", Literal, "alice", Read, Allow)).is_err());
        assert!(a
            .add(b(Cluster, "c", Literal, "User:a", Alter, Allow))
            .is_err());
        assert!(a.add(b(Topic, "", Literal, "User:a", Read, Allow)).is_err());
    }

    #[test]
    fn the_file_round_trips_and_damage_is_corrupt() {
        let mut a = Acls::default();
        a.add(b(
            ResourceType::Cluster,
            "kafka-cluster",
            PatternType::Literal,
            "User:ops",
            Operation::Alter,
            Permission::Allow,
        ))
        .unwrap();
        a.add(b(
            ResourceType::TransactionalId,
            "app-",
            PatternType::Prefixed,
            "User:*",
            Operation::Write,
            Permission::Deny,
        ))
        .unwrap();
        let bytes = a.encode();
        assert_eq!(Acls::decode(&bytes).unwrap(), a);
        for n in 0..bytes.len() {
            assert!(Acls::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut flipped = bytes.clone();
        flipped[7] ^= 0x40;
        assert!(Acls::decode(&flipped).is_err());
    }

    #[test]
    fn changes_report_each_binding_and_filter_and_whether_anything_changed() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let mut a = Acls::default();
        let good = b(Topic, "t", Literal, "User:alice", Read, Allow);
        let bad = b(Topic, "t", Match, "User:alice", Read, Allow);
        let (r, changed) = a.apply(&AclChange::Create(vec![good.clone(), bad]));
        assert!(changed);
        match r {
            AclChanged::Created(rs) => {
                assert!(rs[0].is_ok());
                assert!(rs[1].is_err());
            }
            other => panic!("{other:?}"),
        }
        // Again: nothing new, nothing to store.
        let (_, changed) = a.apply(&AclChange::Create(vec![good.clone()]));
        assert!(!changed);
        let f = AclFilter {
            resource_type: Topic,
            name: Some("t".into()),
            pattern: Literal,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        let (r, changed) = a.apply(&AclChange::Delete(vec![f.clone(), f]));
        assert!(changed);
        assert_eq!(r, AclChanged::Deleted(vec![vec![good], vec![]]));
        assert!(a.is_empty());
    }

    #[test]
    fn any_resource_of_a_type_is_kafkas_authorize_by_resource_type() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let mut a = Acls::default();
        let who = |a: &Acls, p: &str| a.allows_any(&[], p, "h", Write, Topic);
        assert!(!who(&a, "User:alice"));
        a.add(b(Topic, "x-", Prefixed, "User:alice", Write, Allow))
            .unwrap();
        assert!(who(&a, "User:alice"));
        assert!(!who(&a, "User:bob"));
        // A deny of Write on every topic outweighs any allow.
        a.add(b(Topic, "*", Literal, "User:alice", Write, Deny))
            .unwrap();
        assert!(!who(&a, "User:alice"));
        assert!(a.allows_any(&["User:alice".into()], "User:alice", "h", Write, Topic));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn fuzz_acl_file_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Acls::decode(&bytes);
            let mut v = bytes.clone();
            let crc = crc32c::crc32c(&v);
            v.extend_from_slice(&crc.to_be_bytes());
            let _ = Acls::decode(&v);
        }
    }
}
