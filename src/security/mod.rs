//! Security's pure core: SCRAM (`scram`), a connection's SASL
//! authentication (`sasl`), the SCRAM users table with its file format
//! (`users`), and Kafka's ACL model and authorizer rules (`acl`). No I/O, no
//! clock: the callers bring the randomness and the bytes.

pub mod acl;
pub mod sasl;
pub mod scram;
pub mod users;
