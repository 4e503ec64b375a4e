//! What both flatbuffers codecs (`codec`, `group_codec`) share: the
//! decode error and the small conversions every message uses.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};
use thiserror::Error;

use super::generated as fb;
use super::{ErrorCode, WireError};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("undecodable flatbuffer: {0}")]
    Invalid(String),
    #[error("request carries no request body")]
    MissingRequest,
    #[error("unknown request kind {0}")]
    UnknownKind(u8),
    #[error("missing field {0}")]
    MissingField(&'static str),
}

pub(crate) fn err_code(e: &Option<WireError>) -> fb::ErrorCode {
    fb::ErrorCode(e.as_ref().map_or(0, |e| e.code as i16))
}

pub(crate) fn err_of(code: fb::ErrorCode, message: Option<&str>) -> Option<WireError> {
    if code.0 == 0 {
        None
    } else {
        Some(WireError::new(
            ErrorCode::from_i16(code.0),
            message.unwrap_or(""),
        ))
    }
}

pub(crate) fn strings<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    names: &[String],
) -> WIPOffset<Vector<'a, ForwardsUOffset<&'a str>>> {
    let offs: Vec<_> = names.iter().map(|n| fbb.create_string(n)).collect();
    fbb.create_vector(&offs)
}
