//! Security's pure core: SCRAM (`scram`), a connection's SASL
//! authentication (`sasl`) and the SCRAM users table with its file format
//! (`users`). No I/O, no clock: the callers bring the randomness and the
//! bytes.

pub mod sasl;
pub mod scram;
pub mod users;
