//! What the flatbuffers codec's families (`admin`, `data`, `groups`) share:
//! the decode error, the body types and the small conversions every message
//! uses.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, UnionWIPOffset, Vector, WIPOffset};
use thiserror::Error;

use super::generated as fb;
use super::{ErrorCode, WireError};

/// A request body built into a builder: its union tag and table.
pub(crate) type ReqBody = (fb::Request, WIPOffset<UnionWIPOffset>);
/// A response body built into a builder: its union tag and table.
pub(crate) type RespBody = (fb::Response, WIPOffset<UnionWIPOffset>);

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

pub(crate) fn opt_str<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    e: &Option<WireError>,
) -> Option<WIPOffset<&'a str>> {
    e.as_ref().map(|e| fbb.create_string(&e.message))
}

pub(crate) fn name_of(s: Option<&str>) -> Result<String, DecodeError> {
    s.map(str::to_owned)
        .ok_or(DecodeError::MissingField("name"))
}

/// Topic tables of partition tables, the shape of the produce, fetch and
/// list-offsets answers: `partition` builds one partition's table, `topic`
/// one topic's from its name and partitions (partitions first, as the
/// builder wants children before parents).
pub(crate) fn topic_tables<'a, T, P, PT: 'a, TT: 'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    topics: &[T],
    split: impl Fn(&T) -> (&str, &[P]),
    mut partition: impl FnMut(&mut FlatBufferBuilder<'a>, &P) -> WIPOffset<PT>,
    mut topic: impl FnMut(
        &mut FlatBufferBuilder<'a>,
        WIPOffset<&'a str>,
        WIPOffset<Vector<'a, ForwardsUOffset<PT>>>,
    ) -> WIPOffset<TT>,
) -> WIPOffset<Vector<'a, ForwardsUOffset<TT>>> {
    let ts: Vec<_> = topics
        .iter()
        .map(|t| {
            let (name, partitions) = split(t);
            let ps: Vec<_> = partitions.iter().map(|p| partition(fbb, p)).collect();
            let ps = fbb.create_vector(&ps);
            let name = fbb.create_string(name);
            topic(fbb, name, ps)
        })
        .collect();
    fbb.create_vector(&ts)
}
