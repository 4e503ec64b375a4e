//! The broker's SCRAM users: each user's credentials (at most one per
//! mechanism), and the file that keeps them (`DATA/users.scram`).
//!
//! Owns: the table (upsert, delete, lookup, Kafka's describe listing), the
//! name rules, and the file's encoding: `u16 version | u32 users | per user
//! (u16 len | name | u8 credentials | per credential (u8 mechanism type |
//! u32 iterations | u16 salt len | salt | StoredKey | ServerKey, each the
//! hash's length)) | u32 CRC-32C of everything before`.
//!
//! Must never: hold a password (only the derived keys), panic on the file's
//! bytes (every count and length checked against what is there), or
//! decode a file whose checksum fails.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use super::scram::{self, Credential, Mechanism};

pub const FILE_NAME: &str = "users.scram";
const VERSION: u16 = 1;
/// Longest user name (bytes).
pub const MAX_NAME_BYTES: usize = 255;
const MAX_SALT_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsersError {
    #[error("user name {0:?}: 1 to 255 bytes, no control characters")]
    BadName(String),
    #[error("no user {0:?}")]
    NoUser(String),
    #[error("user {user:?} has no {mechanism} credential")]
    NoCredential {
        user: String,
        mechanism: &'static str,
    },
    #[error("corrupt users file: {0}")]
    Corrupt(String),
    #[error("SCRAM mechanism type {0} is not SCRAM-SHA-256 (1) or SCRAM-SHA-512 (2)")]
    UnsupportedMechanism(i8),
    #[error("unacceptable credential: {0}")]
    Unacceptable(String),
    #[error("user {0:?} is changed twice for one mechanism in one request")]
    Duplicate(String),
}

/// One user's result of a request's changes.
pub type UserOutcome = (String, Result<(), UsersError>);

/// One change Kafka's AlterUserScramCredentials (or `shardlog user`) asks
/// for, as it came: checked by `Users::apply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// Add or replace a credential from the salted password the client
    /// computed (the password never reaches the broker).
    Upsert {
        user: String,
        mechanism: i8,
        iterations: i32,
        salt: Vec<u8>,
        salted_password: Vec<u8>,
    },
    Delete {
        user: String,
        mechanism: i8,
    },
}

impl UserChange {
    pub fn user(&self) -> &str {
        match self {
            UserChange::Upsert { user, .. } | UserChange::Delete { user, .. } => user,
        }
    }

    fn mechanism(&self) -> i8 {
        match self {
            UserChange::Upsert { mechanism, .. } | UserChange::Delete { mechanism, .. } => {
                *mechanism
            }
        }
    }
}

pub fn check_name(name: &str) -> Result<(), UsersError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(UsersError::BadName(name.to_owned()));
    }
    Ok(())
}

/// One row of a listing: a user's credential without its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    pub mechanism: Mechanism,
    pub iterations: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    users: BTreeMap<String, BTreeMap<Mechanism, Credential>>,
}

impl Users {
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The credential SCRAM (and PLAIN) check `user` against.
    pub fn credential(&self, user: &str, mechanism: Mechanism) -> Option<Credential> {
        self.users.get(user)?.get(&mechanism).cloned()
    }

    /// Adds or replaces `user`'s credential of its mechanism.
    pub fn upsert(&mut self, user: &str, c: Credential) -> Result<(), UsersError> {
        check_name(user)?;
        self.users
            .entry(user.to_owned())
            .or_default()
            .insert(c.mechanism, c);
        Ok(())
    }

    /// Removes `user`'s credential of `mechanism` (the user goes with its
    /// last one).
    pub fn delete(&mut self, user: &str, mechanism: Mechanism) -> Result<(), UsersError> {
        let creds = self
            .users
            .get_mut(user)
            .ok_or_else(|| UsersError::NoUser(user.to_owned()))?;
        if creds.remove(&mechanism).is_none() {
            return Err(UsersError::NoCredential {
                user: user.to_owned(),
                mechanism: mechanism.name(),
            });
        }
        if creds.is_empty() {
            self.users.remove(user);
        }
        Ok(())
    }

    /// Every user (no names, or an empty list, as Kafka) or those named,
    /// with their credentials' mechanisms and iterations, by name; a named
    /// user that does not exist is an error of its own row.
    pub fn describe(
        &self,
        names: Option<&[String]>,
    ) -> Vec<(String, Result<Vec<CredentialInfo>, UsersError>)> {
        let names = names.filter(|n| !n.is_empty());
        let row = |creds: &BTreeMap<Mechanism, Credential>| {
            creds
                .values()
                .map(|c| CredentialInfo {
                    mechanism: c.mechanism,
                    iterations: c.iterations,
                })
                .collect()
        };
        match names {
            None => self
                .users
                .iter()
                .map(|(n, c)| (n.clone(), Ok(row(c))))
                .collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    let r = self
                        .users
                        .get(n)
                        .map(row)
                        .ok_or_else(|| UsersError::NoUser(n.clone()));
                    (n.clone(), r)
                })
                .collect(),
        }
    }

    /// Applies a request's changes with Kafka's rules: each user's changes
    /// all or none (a user named twice for one mechanism, a bad credential
    /// or a deletion of nothing fails every change of that user); one
    /// result per user, in first-appearance order. The table is changed
    /// only when some user's changes all passed (`changed`).
    pub fn apply(&mut self, changes: &[UserChange]) -> (Vec<UserOutcome>, bool) {
        let mut order: Vec<&str> = Vec::new();
        for c in changes {
            if !order.contains(&c.user()) {
                order.push(c.user());
            }
        }
        let mut changed = false;
        let results = order
            .into_iter()
            .map(|user| {
                let mine: Vec<&UserChange> = changes.iter().filter(|c| c.user() == user).collect();
                let r = self.apply_user(user, &mine);
                changed |= r.is_ok();
                (user.to_owned(), r)
            })
            .collect();
        (results, changed)
    }

    fn apply_user(&mut self, user: &str, changes: &[&UserChange]) -> Result<(), UsersError> {
        if user.is_empty() {
            return Err(UsersError::Unacceptable(
                "a user name must not be empty".into(),
            ));
        }
        check_name(user)?;
        let mut seen = Vec::new();
        for c in changes {
            if seen.contains(&c.mechanism()) {
                return Err(UsersError::Duplicate(user.to_owned()));
            }
            seen.push(c.mechanism());
        }
        // Check everything first, then change: all or none.
        let mut next = self.users.get(user).cloned().unwrap_or_default();
        for c in changes {
            let m = Mechanism::from_kafka_type(c.mechanism())
                .ok_or(UsersError::UnsupportedMechanism(c.mechanism()))?;
            match c {
                UserChange::Upsert {
                    iterations,
                    salt,
                    salted_password,
                    ..
                } => {
                    let iterations = u32::try_from(*iterations).unwrap_or(0);
                    let cred = Credential::from_salted_password(
                        m,
                        salted_password,
                        salt.clone(),
                        iterations,
                    )
                    .map_err(|e| UsersError::Unacceptable(e.to_string()))?;
                    if cred.salt.len() > MAX_SALT_BYTES {
                        return Err(UsersError::Unacceptable(format!(
                            "a salt of {} bytes (at most {MAX_SALT_BYTES})",
                            cred.salt.len()
                        )));
                    }
                    next.insert(m, cred);
                }
                UserChange::Delete { .. } => {
                    if next.remove(&m).is_none() {
                        return Err(UsersError::NoCredential {
                            user: user.to_owned(),
                            mechanism: m.name(),
                        });
                    }
                }
            }
        }
        if next.is_empty() {
            self.users.remove(user);
        } else {
            self.users.insert(user.to_owned(), next);
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = BytesMut::with_capacity(64 + self.users.len() * 200);
        b.put_u16(VERSION);
        b.put_u32(self.users.len() as u32);
        for (name, creds) in &self.users {
            debug_assert!(check_name(name).is_ok());
            b.put_u16(name.len() as u16);
            b.put_slice(name.as_bytes());
            b.put_u8(creds.len() as u8);
            for c in creds.values() {
                assert!(c.salt.len() <= MAX_SALT_BYTES, "salt bound");
                b.put_u8(c.mechanism.kafka_type() as u8);
                b.put_u32(c.iterations);
                b.put_u16(c.salt.len() as u16);
                b.put_slice(&c.salt);
                b.put_slice(&c.stored_key);
                b.put_slice(&c.server_key);
            }
        }
        super::table::seal(b)
    }

    pub fn decode(bytes: &[u8]) -> Result<Users, UsersError> {
        let corrupt = |m: &str| UsersError::Corrupt(m.to_owned());
        let mut r = Cursor(super::table::open(bytes, VERSION).map_err(UsersError::Corrupt)?);
        let n = r.u32()?;
        let mut users = Users::default();
        for _ in 0..n {
            let len = r.u16()? as usize;
            let name = std::str::from_utf8(r.take(len)?)
                .map_err(|_| corrupt("a name that is not UTF-8"))?
                .to_owned();
            check_name(&name).map_err(|e| UsersError::Corrupt(e.to_string()))?;
            let k = r.u8()?;
            for _ in 0..k {
                let m = Mechanism::from_kafka_type(r.u8()? as i8)
                    .ok_or_else(|| corrupt("an unknown mechanism"))?;
                let iterations = r.u32()?;
                if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&iterations) {
                    return Err(corrupt("iterations out of bounds"));
                }
                let salt_len = r.u16()? as usize;
                if salt_len == 0 || salt_len > MAX_SALT_BYTES {
                    return Err(corrupt("a salt length out of bounds"));
                }
                let salt = r.take(salt_len)?.to_vec();
                let stored_key = r.take(m.hash_len())?.to_vec();
                let server_key = r.take(m.hash_len())?.to_vec();
                users.users.entry(name.clone()).or_default().insert(
                    m,
                    Credential {
                        mechanism: m,
                        salt,
                        iterations,
                        stored_key,
                        server_key,
                    },
                );
            }
        }
        r.0.finish().map_err(UsersError::Corrupt)?;
        Ok(users)
    }
}

/// The table reader with the users' error.
struct Cursor<'a>(super::table::Reader<'a>);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], UsersError> {
        self.0.take(n).map_err(UsersError::Corrupt)
    }
    fn u8(&mut self) -> Result<u8, UsersError> {
        self.0.u8().map_err(UsersError::Corrupt)
    }
    fn u16(&mut self) -> Result<u16, UsersError> {
        self.0.u16().map_err(UsersError::Corrupt)
    }
    fn u32(&mut self) -> Result<u32, UsersError> {
        self.0.u32().map_err(UsersError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cred(m: Mechanism, pw: &[u8]) -> Credential {
        Credential::from_password(m, pw, b"pepper".to_vec(), 4096).unwrap()
    }

    #[test]
    fn upsert_delete_describe_and_round_trip() {
        let mut u = Users::default();
        u.upsert("alice", cred(Mechanism::Sha256, b"a")).unwrap();
        u.upsert("alice", cred(Mechanism::Sha512, b"a")).unwrap();
        u.upsert("bob", cred(Mechanism::Sha512, b"b")).unwrap();
        assert!(u.upsert("", cred(Mechanism::Sha512, b"b")).is_err());
        assert!(u.upsert("x\ny", cred(Mechanism::Sha512, b"b")).is_err());
        assert_eq!(Users::decode(&u.encode()).unwrap(), u);
        let d = u.describe(None);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].1.as_ref().unwrap().len(), 2);
        assert_eq!(u.describe(Some(&[])).len(), 2, "an empty list: all");
        let named = u.describe(Some(&["bob".into(), "carol".into()]));
        assert!(named[0].1.is_ok() && named[1].1.is_err());
        assert!(u.credential("bob", Mechanism::Sha256).is_none());
        u.delete("bob", Mechanism::Sha512).unwrap();
        assert_eq!(u.len(), 1, "bob went with his last credential");
        assert!(u.delete("bob", Mechanism::Sha512).is_err());
        assert!(u.delete("alice", Mechanism::Sha256).is_ok());
        assert!(u.delete("alice", Mechanism::Sha256).is_err());
    }

    #[test]
    fn a_request_changes_each_user_all_or_nothing() {
        let m256 = Mechanism::Sha256.kafka_type();
        let m512 = Mechanism::Sha512.kafka_type();
        let up = |user: &str, mech: i8, iterations: i32| UserChange::Upsert {
            user: user.into(),
            mechanism: mech,
            iterations,
            salt: b"salt".to_vec(),
            salted_password: vec![7; if mech == m512 { 64 } else { 32 }],
        };
        let del = |user: &str, mech: i8| UserChange::Delete {
            user: user.into(),
            mechanism: mech,
        };
        let mut u = Users::default();
        let (r, changed) = u.apply(&[
            up("alice", m256, 4096),
            up("alice", m512, 8192),
            up("bob", m256, 4096),
            up("bob", m256, 8192),
            up("carol", m256, 100),
            up("dave", 9, 4096),
            del("erin", m256),
            up("", m256, 4096),
        ]);
        assert!(changed);
        let codes: Vec<(String, Option<UsersError>)> =
            r.into_iter().map(|(n, r)| (n, r.err())).collect();
        assert_eq!(codes[0], ("alice".into(), None));
        assert_eq!(
            codes[1],
            ("bob".into(), Some(UsersError::Duplicate("bob".into())))
        );
        assert!(matches!(codes[2].1, Some(UsersError::Unacceptable(_))));
        assert_eq!(codes[3].1, Some(UsersError::UnsupportedMechanism(9)));
        assert!(matches!(codes[4].1, Some(UsersError::NoCredential { .. })));
        assert!(matches!(codes[5].1, Some(UsersError::Unacceptable(_))));
        // Only alice exists, with both credentials.
        assert_eq!(u.len(), 1);
        assert_eq!(u.describe(None)[0].1.as_ref().unwrap().len(), 2);
        // Deleting one of alice's and adding a bad one: neither happens.
        let (r, changed) = u.apply(&[del("alice", m256), up("alice", m512, 1)]);
        assert!(!changed && r[0].1.is_err());
        assert_eq!(u.describe(None)[0].1.as_ref().unwrap().len(), 2);
        let (_, changed) = u.apply(&[del("alice", m256), del("alice", m512)]);
        assert!(changed);
        assert!(u.is_empty(), "alice went with her last credential");
    }

    #[test]
    fn damaged_files_are_corrupt() {
        let mut u = Users::default();
        u.upsert("alice", cred(Mechanism::Sha256, b"a")).unwrap();
        let good = u.encode();
        for n in 0..good.len() {
            assert!(Users::decode(&good[..n]).is_err(), "cut at {n}");
        }
        let mut flipped = good.clone();
        flipped[8] ^= 1;
        assert!(Users::decode(&flipped).is_err());
        assert_eq!(Users::decode(&Users::default().encode()).unwrap().len(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn fuzz_users_file_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Users::decode(&bytes);
            // With a valid checksum over garbage: still no panic.
            let mut b = bytes.clone();
            let crc = crc32c::crc32c(&b);
            b.extend_from_slice(&crc.to_be_bytes());
            let _ = Users::decode(&b);
        }
    }
}
