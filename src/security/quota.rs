//! Kafka's client quotas (KIP-13, KIP-55 user quotas, KIP-124 request
//! rate), pure: which quota applies to a (user, client id), and how long
//! the throttle holds a client over it.
//!
//! Owns: the quota table keyed as Kafka's entities (a user or the default
//! user, a client id or the default client id, or both) with Kafka's
//! precedence; the pacer (the throttle that holds a client's average to
//! its quota); AlterClientQuotas' edits (set, remove, validation) and
//! DescribeClientQuotas' filters;
//! the quotas file: `u16 version | u32 count | per entry (user side |
//! client side | u16 keys | per key (u16 len | key | f64)) | u32 CRC-32C`,
//! a side being `u8 kind (0 none, 1 named, 2 default) [| u16 len | name]`.
//!
//! Must never: throttle a client no quota names, hand out a throttle over
//! the cap, or read a clock (time is an argument).

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use thiserror::Error;

pub const FILE_NAME: &str = "quotas";
const VERSION: u16 = 1;
/// Longest user or client id in an entity.
const MAX_NAME_BYTES: usize = 1024;

/// Kafka's quota keys.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const KEYS: [&str; 3] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];

/// Kafka's quota window: 11 samples of 1 s (`quota.window.num`,
/// `quota.window.size.seconds`).
pub const WINDOW_MS: u64 = 1000;
pub const SAMPLES: usize = 11;
/// The longest single throttle answered (Kafka caps at its window).
pub const MAX_THROTTLE_MS: u64 = WINDOW_MS * SAMPLES as u64;

/// One side of an entity: a name, or the default (Kafka's `<default>`,
/// a null name on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Name {
    Named(String),
    Default,
}

/// A quota entity: a user, a client id, or both (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    pub user: Option<Name>,
    pub client_id: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum QuotaError {
    #[error("an entity names a user, a client id, or both")]
    EmptyEntity,
    #[error(
        "unknown quota key {0:?} (producer_byte_rate, consumer_byte_rate, request_percentage)"
    )]
    UnknownKey(String),
    #[error("quota {key} = {value}: must be a positive number")]
    BadValue { key: String, value: f64 },
    #[error("an entity name over 1 KiB")]
    LongName,
    #[error("corrupt quotas file: {0}")]
    Corrupt(String),
}

/// One entry of AlterClientQuotas: an entity and its edits (a key set to
/// a value, or removed with None).
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaChange {
    pub entity: Entity,
    pub ops: Vec<(String, Option<f64>)>,
}

/// Kafka's entity types.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";

/// How a DescribeClientQuotas component matches one side of an entity
/// (KIP-546).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// That name exactly.
    Exact(String),
    /// The default entity of the type.
    Default,
    /// Any entity that names the type (a name or the default).
    Specified,
}

/// Entities with their quotas (key, value), as DescribeClientQuotas lists
/// them.
pub type QuotaEntries = Vec<(Entity, Vec<(String, f64)>)>;

/// Every quota of the broker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quotas {
    entries: BTreeMap<Entity, BTreeMap<String, f64>>,
}

impl Quotas {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets (Some) or removes (None) `key` of `entity`; an entity left with
    /// no key goes.
    pub fn alter(
        &mut self,
        entity: &Entity,
        key: &str,
        value: Option<f64>,
    ) -> Result<(), QuotaError> {
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err(QuotaError::EmptyEntity);
        }
        for side in [&entity.user, &entity.client_id] {
            if matches!(side, Some(Name::Named(n)) if n.len() > MAX_NAME_BYTES) {
                return Err(QuotaError::LongName);
            }
        }
        if !KEYS.contains(&key) {
            return Err(QuotaError::UnknownKey(key.to_owned()));
        }
        match value {
            Some(v) if !(v.is_finite() && v > 0.0) => Err(QuotaError::BadValue {
                key: key.to_owned(),
                value: v,
            }),
            Some(v) => {
                self.entries
                    .entry(entity.clone())
                    .or_default()
                    .insert(key.to_owned(), v);
                Ok(())
            }
            None => {
                if let Some(e) = self.entries.get_mut(entity) {
                    e.remove(key);
                    if e.is_empty() {
                        self.entries.remove(entity);
                    }
                }
                Ok(())
            }
        }
    }

    /// AlterClientQuotas: each entry's edits all or none; `validate_only`
    /// checks without changing. Each entry's result, in order, and whether
    /// anything changed (then it must be stored).
    pub fn apply(
        &mut self,
        changes: &[QuotaChange],
        validate_only: bool,
    ) -> (Vec<Result<(), QuotaError>>, bool) {
        let mut changed = false;
        let results = changes
            .iter()
            .map(|c| {
                let mut next = self.clone();
                for (key, value) in &c.ops {
                    next.alter(&c.entity, key, *value)?;
                }
                if !validate_only && next != *self {
                    *self = next;
                    changed = true;
                }
                Ok(())
            })
            .collect();
        (results, changed)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = BytesMut::with_capacity(16 + self.entries.len() * 48);
        b.put_u16(VERSION);
        b.put_u32(self.entries.len() as u32);
        for (e, keys) in &self.entries {
            for side in [&e.user, &e.client_id] {
                match side {
                    None => b.put_u8(0),
                    Some(Name::Default) => b.put_u8(2),
                    Some(Name::Named(n)) => {
                        b.put_u8(1);
                        b.put_u16(n.len() as u16);
                        b.put_slice(n.as_bytes());
                    }
                }
            }
            b.put_u16(keys.len() as u16);
            for (k, v) in keys {
                b.put_u16(k.len() as u16);
                b.put_slice(k.as_bytes());
                b.put_f64(*v);
            }
        }
        super::table::seal(b)
    }

    /// The file's quotas; every entry checked as `alter` checks it.
    pub fn decode(bytes: &[u8]) -> Result<Quotas, QuotaError> {
        let corrupt = QuotaError::Corrupt;
        let mut r = super::table::open(bytes, VERSION).map_err(corrupt)?;
        let n = r.u32().map_err(corrupt)?;
        let mut q = Quotas::default();
        for _ in 0..n {
            let mut read = || -> Result<(Entity, Vec<(String, f64)>), super::table::Corrupt> {
                let mut sides = [None, None];
                for side in &mut sides {
                    *side = match r.u8()? {
                        0 => None,
                        2 => Some(Name::Default),
                        1 => Some(Name::Named(r.str()?)),
                        _ => return Err("entity kind".into()),
                    };
                }
                let [user, client_id] = sides;
                let keys = r.u16()?;
                let mut values = Vec::with_capacity(keys.min(8) as usize);
                for _ in 0..keys {
                    values.push((r.str()?, r.f64()?));
                }
                Ok((Entity { user, client_id }, values))
            };
            let (entity, values) = read().map_err(corrupt)?;
            for (key, v) in values {
                q.alter(&entity, &key, Some(v))
                    .map_err(|e| QuotaError::Corrupt(e.to_string()))?;
            }
        }
        r.finish().map_err(corrupt)?;
        Ok(q)
    }

    /// DescribeClientQuotas: the entries whose entity matches every
    /// component (entity type, match); `strict`: and names no other type.
    /// A type other than user and client-id matches no entry (no IP
    /// quotas here).
    pub fn describe(
        &self,
        components: &[(String, Match)],
        strict: bool,
    ) -> Vec<(&Entity, &BTreeMap<String, f64>)> {
        let side = |e: &'_ Entity, t: &str| -> Option<Option<Name>> {
            match t {
                USER => Some(e.user.clone()),
                CLIENT_ID => Some(e.client_id.clone()),
                _ => None,
            }
        };
        self.entries
            .iter()
            .filter(|(e, _)| {
                components.iter().all(|(t, m)| match (side(e, t), m) {
                    (None, _) => false,
                    (Some(s), Match::Exact(n)) => s == Some(Name::Named(n.clone())),
                    (Some(s), Match::Default) => s == Some(Name::Default),
                    (Some(s), Match::Specified) => s.is_some(),
                })
            })
            .filter(|(e, _)| {
                !strict
                    || [(USER, &e.user), (CLIENT_ID, &e.client_id)]
                        .iter()
                        .all(|(t, s)| s.is_none() || components.iter().any(|(ct, _)| ct == t))
            })
            .collect()
    }

    /// Every entity with its quotas (DescribeClientQuotas without filters).
    pub fn entries(&self) -> impl Iterator<Item = (&Entity, &BTreeMap<String, f64>)> {
        self.entries.iter()
    }

    /// The quota `key` of a client, with the entity it comes from, by
    /// Kafka's precedence: user+client id, user+default client, user,
    /// default user+client id, default user+default client, default user,
    /// client id, default client id. `user`: None when not authenticated.
    pub fn quota_for(
        &self,
        user: Option<&str>,
        client_id: &str,
        key: &str,
    ) -> Option<(Entity, f64)> {
        let named = |s: &str| Some(Name::Named(s.to_owned()));
        let mut order: Vec<Entity> = Vec::with_capacity(8);
        if let Some(u) = user {
            order.push(Entity {
                user: named(u),
                client_id: named(client_id),
            });
            order.push(Entity {
                user: named(u),
                client_id: Some(Name::Default),
            });
            order.push(Entity {
                user: named(u),
                client_id: None,
            });
            order.push(Entity {
                user: Some(Name::Default),
                client_id: named(client_id),
            });
            order.push(Entity {
                user: Some(Name::Default),
                client_id: Some(Name::Default),
            });
            order.push(Entity {
                user: Some(Name::Default),
                client_id: None,
            });
        }
        order.push(Entity {
            user: None,
            client_id: named(client_id),
        });
        order.push(Entity {
            user: None,
            client_id: Some(Name::Default),
        });
        order.into_iter().find_map(|e| {
            self.entries
                .get(&e)
                .and_then(|q| q.get(key).map(|&v| (e.clone(), v)))
        })
    }
}

/// A client's pace against its quota: Kafka's throttle (KIP-13) as a
/// virtual schedule. Each amount recorded moves the time its allowance
/// reaches (`amount / quota` seconds per byte); the throttle is how far
/// that is ahead of now. Kafka averages over 11 one-second samples and
/// expires them whole, which lets a client run about 10% over its quota
/// in steady state (each expiry admits a burst); this holds the average
/// to the quota exactly, with a burst of one window (`BURST_MS` of quota
/// at once from an idle start) and Kafka's cap on a single throttle.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    /// When the allowance catches up with what was recorded (ms); None:
    /// nothing recorded yet.
    due_ms: Option<f64>,
}

/// What an idle client may send at once, in ms of its quota.
pub const BURST_MS: u64 = WINDOW_MS;

impl Pacer {
    /// Records `amount` (bytes) at `now_ms` against `quota` (per second);
    /// returns the throttle in ms: 0 within the allowance, else how long
    /// the client must wait (at most `MAX_THROTTLE_MS`).
    pub fn record(&mut self, now_ms: u64, amount: f64, quota: f64) -> u64 {
        if quota.is_nan() || quota <= 0.0 {
            return 0;
        }
        let now = now_ms as f64;
        let from = self
            .due_ms
            .map_or(now - BURST_MS as f64, |d| d.max(now - BURST_MS as f64));
        let due = from + amount / quota * 1000.0;
        self.due_ms = Some(due);
        let ahead = due - now;
        if ahead <= 0.0 {
            0
        } else {
            (ahead.round() as u64).min(MAX_THROTTLE_MS)
        }
    }

    /// Nothing owed for a whole burst: the pacer can be forgotten.
    pub fn is_idle(&self, now_ms: u64) -> bool {
        self.due_ms
            .is_none_or(|d| d + (BURST_MS as f64) <= now_ms as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(u: &str) -> Option<Name> {
        Some(Name::Named(u.into()))
    }

    #[test]
    fn kafkas_precedence_picks_the_most_specific_quota() {
        let mut q = Quotas::default();
        let set = |q: &mut Quotas, user: Option<Name>, client: Option<Name>, v: f64| {
            q.alter(
                &Entity {
                    user,
                    client_id: client,
                },
                PRODUCER_BYTE_RATE,
                Some(v),
            )
            .unwrap()
        };
        set(&mut q, None, Some(Name::Default), 1.0);
        assert_eq!(
            q.quota_for(Some("alice"), "app", PRODUCER_BYTE_RATE)
                .unwrap()
                .1,
            1.0
        );
        set(&mut q, None, user("app"), 2.0);
        assert_eq!(
            q.quota_for(Some("alice"), "app", PRODUCER_BYTE_RATE)
                .unwrap()
                .1,
            2.0
        );
        set(&mut q, Some(Name::Default), None, 3.0);
        assert_eq!(
            q.quota_for(Some("alice"), "app", PRODUCER_BYTE_RATE)
                .unwrap()
                .1,
            3.0
        );
        // Unauthenticated clients get only client-id quotas.
        assert_eq!(q.quota_for(None, "app", PRODUCER_BYTE_RATE).unwrap().1, 2.0);
        set(&mut q, user("alice"), None, 4.0);
        set(&mut q, user("alice"), Some(Name::Default), 5.0);
        assert_eq!(
            q.quota_for(Some("alice"), "app", PRODUCER_BYTE_RATE)
                .unwrap()
                .1,
            5.0
        );
        set(&mut q, user("alice"), user("app"), 6.0);
        let (e, v) = q
            .quota_for(Some("alice"), "app", PRODUCER_BYTE_RATE)
            .unwrap();
        assert_eq!((e.user, e.client_id, v), (user("alice"), user("app"), 6.0));
        // Another key is unset: no quota, no throttle.
        assert!(q
            .quota_for(Some("alice"), "app", CONSUMER_BYTE_RATE)
            .is_none());
        // Removing the last key drops the entity.
        q.alter(
            &Entity {
                user: user("alice"),
                client_id: user("app"),
            },
            PRODUCER_BYTE_RATE,
            None,
        )
        .unwrap();
        assert_eq!(
            q.quota_for(Some("alice"), "app", PRODUCER_BYTE_RATE)
                .unwrap()
                .1,
            5.0
        );
        // Validation.
        let e = Entity {
            user: None,
            client_id: None,
        };
        assert_eq!(
            q.alter(&e, PRODUCER_BYTE_RATE, Some(1.0)),
            Err(QuotaError::EmptyEntity)
        );
        let e = Entity {
            user: user("x"),
            client_id: None,
        };
        assert!(q.alter(&e, "bytes", Some(1.0)).is_err());
        assert!(q.alter(&e, PRODUCER_BYTE_RATE, Some(-1.0)).is_err());
        assert!(q.alter(&e, PRODUCER_BYTE_RATE, Some(f64::NAN)).is_err());
    }

    #[test]
    fn the_file_round_trips_and_damage_is_corrupt() {
        let mut q = Quotas::default();
        let e = |u: Option<Name>, c: Option<Name>| Entity {
            user: u,
            client_id: c,
        };
        q.alter(&e(user("alice"), None), PRODUCER_BYTE_RATE, Some(1e6))
            .unwrap();
        q.alter(
            &e(Some(Name::Default), Some(Name::Default)),
            CONSUMER_BYTE_RATE,
            Some(5e5),
        )
        .unwrap();
        q.alter(
            &e(None, Some(Name::Named("app".into()))),
            REQUEST_PERCENTAGE,
            Some(25.0),
        )
        .unwrap();
        let bytes = q.encode();
        assert_eq!(Quotas::decode(&bytes).unwrap(), q);
        for n in 0..bytes.len() {
            assert!(Quotas::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut flipped = bytes.clone();
        flipped[9] ^= 1;
        assert!(Quotas::decode(&flipped).is_err());
    }

    proptest::proptest! {
        #[test]
        fn fuzz_quota_file_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = Quotas::decode(&bytes);
            let mut v = bytes.clone();
            let crc = crc32c::crc32c(&v);
            v.extend_from_slice(&crc.to_be_bytes());
            let _ = Quotas::decode(&v);
        }
    }

    #[test]
    fn the_pacer_holds_a_sender_to_its_quota_after_one_burst() {
        let quota = 1_000_000.0; // 1 MB/s
        let mut p = Pacer::default();
        // Half the quota: never throttled.
        for s in 0..20u64 {
            assert_eq!(p.record(s * 1000, 500_000.0, quota), 0);
        }
        // A burst of 20 MB: the client owes 19 s past its burst; one
        // throttle is capped (Kafka's cap), the next takes the rest.
        let t = p.record(20_500, 20_000_000.0, quota);
        assert_eq!(t, MAX_THROTTLE_MS);
        assert!(p.record(20_500 + t, 1.0, quota) > 7_000);
        // Idle long enough: forgotten, and a fresh burst is allowed.
        assert!(p.is_idle(60_000));
        assert_eq!(p.record(60_000, 900_000.0, quota), 0);
        // A sender that waits out each throttle averages the quota, for
        // every request size, over any 10 s once its first burst is spent.
        for size in [10_240.0, 65_536.0, 262_144.0] {
            let mut p = Pacer::default();
            let mut now = 0u64;
            let mut sent = Vec::new();
            while now < 40_000 {
                sent.push((now, size));
                now += 1 + p.record(now, size, quota);
            }
            for from in [5_000u64, 20_000, 29_000] {
                let total: f64 = sent
                    .iter()
                    .filter(|(t, _)| (from..from + 10_000).contains(t))
                    .map(|(_, a)| a)
                    .sum();
                let avg = total / 10.0;
                assert!(
                    (avg - quota).abs() / quota < 0.03,
                    "{size} from {from}: {avg}"
                );
            }
        }
    }
}
