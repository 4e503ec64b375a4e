//! Security's pure core: SCRAM (`scram`), a connection's SASL
//! authentication (`sasl`), the SCRAM users table with its file format
//! (`users`), Kafka's ACL model and authorizer rules (`acl`), and client
//! quotas with Kafka's throttle (`quota`). No I/O, no clock: the callers
//! bring the randomness, the time and the bytes.

pub mod acl;
pub mod principal;
pub mod quota;
pub mod sasl;
pub mod scram;
pub mod table;
pub mod users;
