//! Client quotas over Kafka (KIP-546): DescribeClientQuotas and
//! AlterClientQuotas, decoded into the door's work and answered from the
//! quota table's results.
//!
//! Owns: their translation both ways (pure): entities as Kafka names them
//! (`user`, `client-id`; a null name is the default entity), and an entry
//! the table cannot hold (an unknown entity type, a type twice) refused on
//! its own.
//!
//! Must never: decide who may read or change quotas (the door's authorizer
//! does: DescribeConfigs / AlterConfigs on the cluster), or store anything.

use bytes::Bytes;
use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

use super::wire::{encode_frame, QuotasWork, RawEntity, Work};
use crate::security::quota::{Entity, Match, Name, QuotaChange, QuotaEntries, CLIENT_ID, USER};

/// A decoded entity, or why it is not one.
fn entity(parts: &[(String, Option<String>)]) -> Result<Entity, String> {
    let mut e = Entity {
        user: None,
        client_id: None,
    };
    for (t, name) in parts {
        let side = match t.as_str() {
            USER => &mut e.user,
            CLIENT_ID => &mut e.client_id,
            other => {
                return Err(format!(
                    "unsupported entity type {other:?} (user, client-id)"
                ))
            }
        };
        if side.is_some() {
            return Err(format!("entity type {t:?} twice"));
        }
        *side = Some(name.clone().map_or(Name::Default, Name::Named));
    }
    if parts.is_empty() {
        return Err("an entity names a user, a client id, or both".into());
    }
    Ok(e)
}

fn parts(e: &Entity) -> Vec<(&'static str, Option<String>)> {
    let mut out = Vec::new();
    for (t, side) in [(USER, &e.user), (CLIENT_ID, &e.client_id)] {
        match side {
            None => {}
            Some(Name::Default) => out.push((t, None)),
            Some(Name::Named(n)) => out.push((t, Some(n.clone()))),
        }
    }
    out
}

pub(super) fn decode_describe(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = DescribeClientQuotasRequest::decode(body, version)?;
    let components = r
        .components
        .iter()
        .map(|c| {
            let m = match (c.match_type, &c._match) {
                (0, Some(n)) => Match::Exact(n.as_str().to_owned()),
                (0, None) => return Err("match type 0 (exact) names no entity".to_owned()),
                (1, _) => Match::Default,
                (2, _) => Match::Specified,
                (t, _) => return Err(format!("unknown match type {t}")),
            };
            Ok((c.entity_type.as_str().to_owned(), m))
        })
        .collect::<Result<Vec<_>, String>>();
    Ok(Work::Quotas(QuotasWork::Describe {
        components,
        strict: r.strict,
    }))
}

pub(super) fn decode_alter(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = AlterClientQuotasRequest::decode(body, version)?;
    let entries = r
        .entries
        .iter()
        .map(|e| {
            let ps: RawEntity = e
                .entity
                .iter()
                .map(|p| {
                    (
                        p.entity_type.as_str().to_owned(),
                        p.entity_name.as_ref().map(|n| n.as_str().to_owned()),
                    )
                })
                .collect();
            let raw = ps.clone();
            let change = entity(&ps).map(|entity| QuotaChange {
                entity,
                ops: e
                    .ops
                    .iter()
                    .map(|o| (o.key.as_str().to_owned(), (!o.remove).then_some(o.value)))
                    .collect(),
            });
            (raw, change)
        })
        .collect();
    Ok(Work::Quotas(QuotasWork::Alter {
        entries,
        validate_only: r.validate_only,
    }))
}

/// DescribeClientQuotas' answer: the matching entries, or the error.
pub(super) fn describe_response(
    version: i16,
    correlation_id: i32,
    result: Result<QuotaEntries, (i16, String)>,
) -> anyhow::Result<Bytes> {
    let mut r = DescribeClientQuotasResponse::default();
    match result {
        Err((code, msg)) => {
            r.error_code = code;
            r.error_message = Some(StrBytes::from_string(msg));
            r.entries = None;
        }
        Ok(entries) => {
            r.entries = Some(
                entries
                    .into_iter()
                    .map(|(e, values)| {
                        let mut d = describe_client_quotas_response::EntryData::default();
                        d.entity = parts(&e)
                            .into_iter()
                            .map(|(t, n)| {
                                let mut p = describe_client_quotas_response::EntityData::default();
                                p.entity_type = StrBytes::from_static_str(t);
                                p.entity_name = n.map(StrBytes::from_string);
                                p
                            })
                            .collect();
                        d.values = values
                            .into_iter()
                            .map(|(k, v)| {
                                let mut x = describe_client_quotas_response::ValueData::default();
                                x.key = StrBytes::from_string(k);
                                x.value = v;
                                x
                            })
                            .collect();
                        d
                    })
                    .collect(),
            );
        }
    }
    encode_frame(ApiKey::DescribeClientQuotas, version, correlation_id, &r)
}

/// AlterClientQuotas' answer: each entry's entity, as asked, with its
/// error.
pub(super) fn alter_response(
    version: i16,
    correlation_id: i32,
    entries: &[(RawEntity, Option<(i16, String)>)],
) -> anyhow::Result<Bytes> {
    let mut r = AlterClientQuotasResponse::default();
    r.entries = entries
        .iter()
        .map(|(raw, err)| {
            let mut d = alter_client_quotas_response::EntryData::default();
            d.entity = raw
                .iter()
                .map(|(t, n)| {
                    let mut p = alter_client_quotas_response::EntityData::default();
                    p.entity_type = StrBytes::from_string(t.clone());
                    p.entity_name = n.clone().map(StrBytes::from_string);
                    p
                })
                .collect();
            if let Some((code, msg)) = err {
                d.error_code = *code;
                d.error_message = Some(StrBytes::from_string(msg.clone()));
            }
            d
        })
        .collect();
    encode_frame(ApiKey::AlterClientQuotas, version, correlation_id, &r)
}

/// An invalid entry's or filter's error (Kafka: INVALID_REQUEST).
pub(super) fn invalid(why: &str) -> (i16, String) {
    (ResponseError::InvalidRequest.code(), why.to_owned())
}
