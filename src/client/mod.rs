//! The client side, in the same crate as the broker but never linked into
//! its data path: blocking clients of the native protocol (`blocking`), a
//! Kafka-style batching `producer`, and the group `consumer`. The CLI, the
//! bench tool and the tests use them.
//!
//! Owns: everything a program needs to talk to a broker over std::net.
//!
//! Must never: be imported by a broker module (the codemap test holds the
//! arrows: nothing below `server` points here).

mod blocking;
pub mod consumer;
pub mod producer;
pub mod sasl;
pub mod tls;

pub use blocking::{
    murmur2, partition_for_key, produce_request, Client, ClientError, RoutedClient, Ticket,
    CONNECT_TIMEOUT, MAX_RESPONSE_BYTES, RESPONSE_TIMEOUT,
};
