//! Kafka's client quotas (KIP-13, KIP-55 user quotas, KIP-124 request
//! rate), pure: which quota applies to a (user, client id), how fast a
//! client is going, and how long Kafka's throttle holds it.
//!
//! Owns: the quota table keyed as Kafka's entities (a user or the default
//! user, a client id or the default client id, or both) with Kafka's
//! precedence; the windowed rate (Kafka's `quota.window.num` samples of
//! `quota.window.size.seconds`); the throttle time Kafka computes from a
//! rate over its bound; AlterClientQuotas' edits (set, remove, validation).
//!
//! Must never: throttle a client no quota names, hand out a throttle over
//! the cap, or read a clock (time is an argument).

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

/// Kafka's quota keys.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const KEYS: [&str; 3] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];

/// Kafka's defaults: 11 samples of 1 s.
pub const WINDOW_MS: u64 = 1000;
pub const SAMPLES: usize = 11;
/// The longest throttle answered (Kafka caps at the quota window size).
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
}

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

/// A rate over Kafka's sampled window: `SAMPLES` buckets of `WINDOW_MS`.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    /// (bucket start ms, amount), oldest first.
    buckets: VecDeque<(u64, f64)>,
}

impl Rate {
    /// Adds `amount` (bytes, or request time in ms) at `now_ms`.
    pub fn record(&mut self, now_ms: u64, amount: f64) {
        let start = now_ms - now_ms % WINDOW_MS;
        match self.buckets.back_mut() {
            Some((s, v)) if *s == start => *v += amount,
            _ => self.buckets.push_back((start, amount)),
        }
        self.expire(now_ms);
    }

    fn expire(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(WINDOW_MS * SAMPLES as u64);
        while self
            .buckets
            .front()
            .is_some_and(|(s, _)| *s + WINDOW_MS <= horizon)
        {
            self.buckets.pop_front();
        }
    }

    /// The window the rate is taken over, in ms: Kafka's measured span
    /// (from the oldest sample on), at least `SAMPLES - 1` full windows so
    /// a first burst is not read as an enormous rate.
    fn window_ms(&self, now_ms: u64) -> u64 {
        let oldest = self.buckets.front().map_or(now_ms, |(s, _)| *s);
        let span = now_ms.saturating_sub(oldest) + 1;
        span.max(WINDOW_MS * (SAMPLES as u64 - 1))
    }

    /// Amount per second at `now_ms`.
    pub fn per_second(&mut self, now_ms: u64) -> f64 {
        self.expire(now_ms);
        let total: f64 = self.buckets.iter().map(|(_, v)| v).sum();
        total * 1000.0 / self.window_ms(now_ms) as f64
    }

    /// Kafka's throttle for a rate over `quota` (per second): how long the
    /// client must pause so its rate over the window falls back to the
    /// quota, `(rate - quota) / quota * window`, capped; 0 within quota.
    pub fn throttle_ms(&mut self, now_ms: u64, quota: f64) -> u64 {
        let rate = self.per_second(now_ms);
        if rate <= quota || quota <= 0.0 {
            return 0;
        }
        let ms = (rate - quota) / quota * self.window_ms(now_ms) as f64;
        (ms.round() as u64).min(MAX_THROTTLE_MS)
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
    fn the_throttle_brings_the_windowed_rate_back_to_the_quota() {
        let quota = 1_000_000.0; // 1 MB/s
        let mut r = Rate::default();
        // 0.5 MB/s for 20 s: never throttled.
        for s in 0..20u64 {
            r.record(s * 1000, 500_000.0);
            assert_eq!(r.throttle_ms(s * 1000 + 999, quota), 0);
        }
        // A burst of 20 MB: the rate over the ~11 s window is about 2.3
        // MB/s, so the client pauses until the window would average 1 MB/s.
        r.record(20_500, 20_000_000.0);
        let t = r.throttle_ms(20_500, quota);
        assert!(t > 5_000 && t <= MAX_THROTTLE_MS, "{t}");
        // After the pause (nothing recorded meanwhile) the rate has come
        // down under the quota and nothing more is asked.
        assert!(r.per_second(20_500 + t) < 2.5 * quota);
        assert_eq!(r.throttle_ms(45_000, quota), 0);
        // A sender that paces itself by the throttle averages the quota.
        let mut r = Rate::default();
        let mut now = 0u64;
        let mut sent = 0.0;
        while now < 60_000 {
            r.record(now, 100_000.0);
            sent += 100_000.0;
            now += 10 + r.throttle_ms(now, quota);
        }
        let avg = sent * 1000.0 / now as f64;
        assert!((avg - quota).abs() / quota < 0.1, "{avg}");
    }
}
