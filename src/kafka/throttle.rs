//! Client quotas enforced on one shard (one Kafka broker, as each shard
//! is advertised): Kafka's byte-rate sensors and throttle (KIP-13, KIP-219:
//! the answer carries `throttle_time_ms` and the connection reads nothing
//! more for that long).
//!
//! Owns: the shard's sensors, one per quota entity a client falls under
//! (its own user and client id where the quota is a default's, as Kafka's
//! metric tags), and the decision for one request: record what it moved,
//! then how long its client must wait. Time comes in as an argument.
//!
//! Must never: slow a client no quota names, or grow without bound (idle
//! sensors are dropped past a count).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::security::quota::{Entity, Name, Pacer, Quotas};

/// Sensors kept before idle ones are dropped.
const MAX_SENSORS: usize = 10_000;

/// Who a request is, to the quotas.
#[derive(Debug, Clone)]
pub struct Client {
    /// The principal's name (`alice` of `User:alice`; `ANONYMOUS` without
    /// authentication, as Kafka).
    pub user: String,
    pub client_id: String,
}

/// One shard's sensors.
#[derive(Debug, Default)]
pub struct Throttle {
    sensors: RefCell<HashMap<(Entity, &'static str), Pacer>>,
}

impl Throttle {
    /// Records `amount` bytes under `key` (producer_byte_rate or
    /// consumer_byte_rate) for the client's quota, and returns the throttle
    /// in ms its rate now earns (0: within its quota, or no quota).
    pub fn record(
        &self,
        quotas: &Quotas,
        client: &Client,
        key: &'static str,
        amount: u64,
        now_ms: u64,
    ) -> u64 {
        let Some((entity, quota)) = quotas.quota_for(Some(&client.user), &client.client_id, key)
        else {
            return 0;
        };
        // A default's quota is each client's own: the sensor names them.
        let concrete = Entity {
            user: entity
                .user
                .as_ref()
                .map(|_| Name::Named(client.user.clone())),
            client_id: entity
                .client_id
                .as_ref()
                .map(|_| Name::Named(client.client_id.clone())),
        };
        let mut sensors = self.sensors.borrow_mut();
        if sensors.len() >= MAX_SENSORS {
            sensors.retain(|_, r| !r.is_idle(now_ms));
        }
        sensors
            .entry((concrete, key))
            .or_default()
            .record(now_ms, amount as f64, quota)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::quota::PRODUCER_BYTE_RATE;

    #[test]
    fn a_client_over_its_quota_is_throttled_and_another_is_not() {
        let mut q = Quotas::default();
        q.alter(
            &Entity {
                user: None,
                client_id: Some(Name::Named("slow".into())),
            },
            PRODUCER_BYTE_RATE,
            Some(1000.0),
        )
        .unwrap();
        let t = Throttle::default();
        let who = |c: &str| Client {
            user: "ANONYMOUS".into(),
            client_id: c.into(),
        };
        // A burst of 1 s at 1000 B/s is 1,000 bytes: 30,000 at once is over.
        assert!(t.record(&q, &who("slow"), PRODUCER_BYTE_RATE, 30_000, 50_000) > 0);
        assert_eq!(
            t.record(&q, &who("fast"), PRODUCER_BYTE_RATE, 30_000_000, 50_000),
            0
        );
        // Defaults are per client: two clients under a default quota each
        // get their own budget.
        let mut d = Quotas::default();
        d.alter(
            &Entity {
                user: None,
                client_id: Some(Name::Default),
            },
            PRODUCER_BYTE_RATE,
            Some(1000.0),
        )
        .unwrap();
        assert_eq!(t.record(&d, &who("a"), PRODUCER_BYTE_RATE, 900, 60_000), 0);
        assert_eq!(t.record(&d, &who("b"), PRODUCER_BYTE_RATE, 900, 60_000), 0);
        assert!(t.record(&d, &who("a"), PRODUCER_BYTE_RATE, 20_000, 60_000) > 0);
    }
}
