//! The access-control family of the native wire, typed <-> flatbuffers:
//! DescribeAcls and AlterAcls (Kafka's DescribeAcls, CreateAcls and
//! DeleteAcls for `shardlog acl`), DescribeQuotas and AlterQuotas (Kafka's
//! Describe/AlterClientQuotas for `shardlog quota`), and SaslAuthenticate
//! (one step of a SASL login, answered by the door itself).
//!
//! Owns: `AclEntry` both ways, as a binding and as a filter (an absent
//! string matches any); `QuotaEntry` both ways. A code none of Kafka's is
//! a decode error: the request or answer is refused whole, never guessed.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::fb::{err_code, err_of, opt_str, DecodeError, ReqBody, RespBody};
use super::generated as fb;
use super::{Request, Response};
use crate::protocol::WireError;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use crate::security::quota::{Entity, Name, QuotaChange};

fn side<'a>(fbb: &mut FlatBufferBuilder<'a>, n: &Option<Name>) -> (i8, Option<WIPOffset<&'a str>>) {
    match n {
        None => (0, None),
        Some(Name::Named(s)) => (1, Some(fbb.create_string(s))),
        Some(Name::Default) => (2, None),
    }
}

fn read_side(kind: i8, name: Option<&str>) -> Result<Option<Name>, DecodeError> {
    Ok(match kind {
        0 => None,
        1 => Some(Name::Named(
            name.ok_or(DecodeError::MissingField("entity name"))?
                .to_owned(),
        )),
        2 => Some(Name::Default),
        _ => return Err(DecodeError::Invalid("unknown quota entity kind".into())),
    })
}

/// A quota entry: the entity, its values (None: remove the key), its error.
fn quota_entry<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    e: &Entity,
    values: &[(String, Option<f64>)],
    error: &Option<WireError>,
) -> WIPOffset<fb::QuotaEntry<'a>> {
    let (user_kind, user) = side(fbb, &e.user);
    let (client_kind, client_id) = side(fbb, &e.client_id);
    let entity = fb::QuotaEntity::create(
        fbb,
        &fb::QuotaEntityArgs {
            user_kind,
            user,
            client_kind,
            client_id,
        },
    );
    let vs: Vec<_> = values
        .iter()
        .map(|(k, v)| {
            let key = fbb.create_string(k);
            fb::QuotaValue::create(
                fbb,
                &fb::QuotaValueArgs {
                    key: Some(key),
                    value: v.unwrap_or(0.0),
                    remove: v.is_none(),
                },
            )
        })
        .collect();
    let values = fbb.create_vector(&vs);
    let error_message = opt_str(fbb, error);
    fb::QuotaEntry::create(
        fbb,
        &fb::QuotaEntryArgs {
            entity: Some(entity),
            values: Some(values),
            error_code: err_code(error),
            error_message,
        },
    )
}

type ReadEntry = (Entity, Vec<(String, Option<f64>)>, Option<WireError>);

fn read_quota_entry(q: &fb::QuotaEntry<'_>) -> Result<ReadEntry, DecodeError> {
    let e = q.entity().ok_or(DecodeError::MissingField("entity"))?;
    let entity = Entity {
        user: read_side(e.user_kind(), e.user())?,
        client_id: read_side(e.client_kind(), e.client_id())?,
    };
    let values = q
        .values()
        .iter()
        .flatten()
        .map(|v| {
            let key = v.key().ok_or(DecodeError::MissingField("key"))?.to_owned();
            Ok((key, (!v.remove()).then_some(v.value())))
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok((entity, values, err_of(q.error_code(), q.error_message())))
}

/// A binding's or filter's parts, as `AclEntry` carries them.
struct Entry<'s> {
    resource_type: ResourceType,
    pattern: PatternType,
    name: Option<&'s str>,
    principal: Option<&'s str>,
    host: Option<&'s str>,
    operation: Operation,
    permission: Permission,
}

fn entry<'a>(fbb: &mut FlatBufferBuilder<'a>, e: &Entry<'_>) -> WIPOffset<fb::AclEntry<'a>> {
    let name = e.name.map(|s| fbb.create_string(s));
    let principal = e.principal.map(|s| fbb.create_string(s));
    let host = e.host.map(|s| fbb.create_string(s));
    fb::AclEntry::create(
        fbb,
        &fb::AclEntryArgs {
            resource_type: e.resource_type.code(),
            pattern: e.pattern.code(),
            name,
            principal,
            host,
            operation: e.operation.code(),
            permission: e.permission.code(),
        },
    )
}

fn of_binding(b: &AclBinding) -> Entry<'_> {
    Entry {
        resource_type: b.resource_type,
        pattern: b.pattern,
        name: Some(&b.name),
        principal: Some(&b.principal),
        host: Some(&b.host),
        operation: b.operation,
        permission: b.permission,
    }
}

fn of_filter(f: &AclFilter) -> Entry<'_> {
    Entry {
        resource_type: f.resource_type,
        pattern: f.pattern,
        name: f.name.as_deref(),
        principal: f.principal.as_deref(),
        host: f.host.as_deref(),
        operation: f.operation,
        permission: f.permission,
    }
}

fn read(e: &fb::AclEntry<'_>) -> Result<AclFilter, DecodeError> {
    let bad = |what: &'static str| DecodeError::Invalid(format!("unknown ACL {what} code"));
    Ok(AclFilter {
        resource_type: ResourceType::from_code(e.resource_type())
            .ok_or_else(|| bad("resource type"))?,
        pattern: PatternType::from_code(e.pattern()).ok_or_else(|| bad("pattern type"))?,
        name: e.name().map(str::to_owned),
        principal: e.principal().map(str::to_owned),
        host: e.host().map(str::to_owned),
        operation: Operation::from_code(e.operation()).ok_or_else(|| bad("operation"))?,
        permission: Permission::from_code(e.permission()).ok_or_else(|| bad("permission"))?,
    })
}

/// A binding needs every string; whether it is valid is the model's call
/// (`AclBinding::validate`, answered per binding).
fn read_binding(e: &fb::AclEntry<'_>) -> Result<AclBinding, DecodeError> {
    let f = read(e)?;
    Ok(AclBinding {
        resource_type: f.resource_type,
        pattern: f.pattern,
        name: f.name.ok_or(DecodeError::MissingField("name"))?,
        principal: f.principal.ok_or(DecodeError::MissingField("principal"))?,
        host: f.host.ok_or(DecodeError::MissingField("host"))?,
        operation: f.operation,
        permission: f.permission,
    })
}

pub(super) fn encode_request(fbb: &mut FlatBufferBuilder<'_>, req: &Request) -> Option<ReqBody> {
    Some(match req {
        Request::DescribeAcls(f) => {
            let filter = entry(fbb, &of_filter(f));
            (
                fb::Request::DescribeAclsRequest,
                fb::DescribeAclsRequest::create(
                    fbb,
                    &fb::DescribeAclsRequestArgs {
                        filter: Some(filter),
                    },
                )
                .as_union_value(),
            )
        }
        Request::AlterAcls { create, delete } => {
            let c: Vec<_> = create.iter().map(|b| entry(fbb, &of_binding(b))).collect();
            let d: Vec<_> = delete.iter().map(|f| entry(fbb, &of_filter(f))).collect();
            let creations = fbb.create_vector(&c);
            let deletions = fbb.create_vector(&d);
            (
                fb::Request::AlterAclsRequest,
                fb::AlterAclsRequest::create(
                    fbb,
                    &fb::AlterAclsRequestArgs {
                        creations: Some(creations),
                        deletions: Some(deletions),
                    },
                )
                .as_union_value(),
            )
        }
        Request::DescribeQuotas => (
            fb::Request::DescribeQuotasRequest,
            fb::DescribeQuotasRequest::create(fbb, &fb::DescribeQuotasRequestArgs {})
                .as_union_value(),
        ),
        Request::AlterQuotas {
            changes,
            validate_only,
        } => {
            let es: Vec<_> = changes
                .iter()
                .map(|c| quota_entry(fbb, &c.entity, &c.ops, &None))
                .collect();
            let entries = fbb.create_vector(&es);
            (
                fb::Request::AlterQuotasRequest,
                fb::AlterQuotasRequest::create(
                    fbb,
                    &fb::AlterQuotasRequestArgs {
                        entries: Some(entries),
                        validate_only: *validate_only,
                    },
                )
                .as_union_value(),
            )
        }
        Request::SaslAuthenticate { mechanism, token } => {
            let mechanism = mechanism.as_deref().map(|m| fbb.create_string(m));
            let auth_bytes = fbb.create_vector(token);
            (
                fb::Request::SaslAuthenticateRequest,
                fb::SaslAuthenticateRequest::create(
                    fbb,
                    &fb::SaslAuthenticateRequestArgs {
                        mechanism,
                        auth_bytes: Some(auth_bytes),
                    },
                )
                .as_union_value(),
            )
        }
        _ => return None,
    })
}

pub(super) fn decode_request(
    env: &fb::RequestEnvelope<'_>,
) -> Result<Option<Request>, DecodeError> {
    let missing = DecodeError::MissingRequest;
    Ok(Some(match env.request_type() {
        fb::Request::DescribeAclsRequest => {
            let d = env.request_as_describe_acls_request().ok_or(missing)?;
            let f = d.filter().ok_or(DecodeError::MissingField("filter"))?;
            Request::DescribeAcls(read(&f)?)
        }
        fb::Request::AlterAclsRequest => {
            let a = env.request_as_alter_acls_request().ok_or(missing)?;
            let create = a
                .creations()
                .iter()
                .flatten()
                .map(|e| read_binding(&e))
                .collect::<Result<_, _>>()?;
            let delete = a
                .deletions()
                .iter()
                .flatten()
                .map(|e| read(&e))
                .collect::<Result<_, _>>()?;
            Request::AlterAcls { create, delete }
        }
        fb::Request::DescribeQuotasRequest => Request::DescribeQuotas,
        fb::Request::AlterQuotasRequest => {
            let a = env.request_as_alter_quotas_request().ok_or(missing)?;
            let changes = a
                .entries()
                .iter()
                .flatten()
                .map(|q| read_quota_entry(&q).map(|(entity, ops, _)| QuotaChange { entity, ops }))
                .collect::<Result<_, _>>()?;
            Request::AlterQuotas {
                changes,
                validate_only: a.validate_only(),
            }
        }
        fb::Request::SaslAuthenticateRequest => {
            let a = env.request_as_sasl_authenticate_request().ok_or(missing)?;
            Request::SaslAuthenticate {
                mechanism: a.mechanism().map(str::to_owned),
                token: a
                    .auth_bytes()
                    .map(|b| bytes::Bytes::copy_from_slice(b.bytes()))
                    .unwrap_or_default(),
            }
        }
        _ => return Ok(None),
    }))
}

pub(super) fn encode_response(fbb: &mut FlatBufferBuilder<'_>, r: &Response) -> Option<RespBody> {
    Some(match r {
        Response::DescribeAcls(bindings) => {
            let es: Vec<_> = bindings
                .iter()
                .map(|b| entry(fbb, &of_binding(b)))
                .collect();
            let acls = fbb.create_vector(&es);
            (
                fb::Response::DescribeAclsResponse,
                fb::DescribeAclsResponse::create(
                    fbb,
                    &fb::DescribeAclsResponseArgs { acls: Some(acls) },
                )
                .as_union_value(),
            )
        }
        Response::AlterAcls { created, deleted } => {
            let c: Vec<_> = created
                .iter()
                .map(|e| {
                    let msg = opt_str(fbb, e);
                    fb::AclCreationResult::create(
                        fbb,
                        &fb::AclCreationResultArgs {
                            error_code: err_code(e),
                            error_message: msg,
                        },
                    )
                })
                .collect();
            let d: Vec<_> = deleted
                .iter()
                .map(|gone| {
                    let es: Vec<_> = gone.iter().map(|b| entry(fbb, &of_binding(b))).collect();
                    let es = fbb.create_vector(&es);
                    fb::AclDeletionResult::create(
                        fbb,
                        &fb::AclDeletionResultArgs { deleted: Some(es) },
                    )
                })
                .collect();
            let created = fbb.create_vector(&c);
            let deleted = fbb.create_vector(&d);
            (
                fb::Response::AlterAclsResponse,
                fb::AlterAclsResponse::create(
                    fbb,
                    &fb::AlterAclsResponseArgs {
                        created: Some(created),
                        deleted: Some(deleted),
                    },
                )
                .as_union_value(),
            )
        }
        Response::DescribeQuotas(entries) => {
            let es: Vec<_> = entries
                .iter()
                .map(|(e, vs)| {
                    let vs: Vec<(String, Option<f64>)> =
                        vs.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
                    quota_entry(fbb, e, &vs, &None)
                })
                .collect();
            let entries = fbb.create_vector(&es);
            (
                fb::Response::DescribeQuotasResponse,
                fb::DescribeQuotasResponse::create(
                    fbb,
                    &fb::DescribeQuotasResponseArgs {
                        entries: Some(entries),
                    },
                )
                .as_union_value(),
            )
        }
        Response::AlterQuotas(results) => {
            let none = Entity {
                user: None,
                client_id: None,
            };
            let es: Vec<_> = results
                .iter()
                .map(|r| quota_entry(fbb, &none, &[], r))
                .collect();
            let entries = fbb.create_vector(&es);
            (
                fb::Response::AlterQuotasResponse,
                fb::AlterQuotasResponse::create(
                    fbb,
                    &fb::AlterQuotasResponseArgs {
                        entries: Some(entries),
                    },
                )
                .as_union_value(),
            )
        }
        Response::SaslAuthenticate { token, done } => {
            let auth_bytes = fbb.create_vector(token);
            (
                fb::Response::SaslAuthenticateResponse,
                fb::SaslAuthenticateResponse::create(
                    fbb,
                    &fb::SaslAuthenticateResponseArgs {
                        auth_bytes: Some(auth_bytes),
                        done: *done,
                    },
                )
                .as_union_value(),
            )
        }
        _ => return None,
    })
}

pub(super) fn decode_response(
    env: &fb::ResponseEnvelope<'_>,
) -> Result<Option<Response>, DecodeError> {
    let missing = DecodeError::MissingRequest;
    Ok(Some(match env.response_type() {
        fb::Response::DescribeAclsResponse => {
            let d = env.response_as_describe_acls_response().ok_or(missing)?;
            Response::DescribeAcls(
                d.acls()
                    .iter()
                    .flatten()
                    .map(|e| read_binding(&e))
                    .collect::<Result<_, _>>()?,
            )
        }
        fb::Response::AlterAclsResponse => {
            let a = env.response_as_alter_acls_response().ok_or(missing)?;
            let created = a
                .created()
                .iter()
                .flatten()
                .map(|c| err_of(c.error_code(), c.error_message()))
                .collect();
            let deleted = a
                .deleted()
                .iter()
                .flatten()
                .map(|d| {
                    d.deleted()
                        .iter()
                        .flatten()
                        .map(|e| read_binding(&e))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<_, _>>()?;
            Response::AlterAcls { created, deleted }
        }
        fb::Response::DescribeQuotasResponse => {
            let d = env.response_as_describe_quotas_response().ok_or(missing)?;
            let mut out = Vec::new();
            for q in d.entries().iter().flatten() {
                let (e, vs, _) = read_quota_entry(&q)?;
                out.push((
                    e,
                    vs.into_iter().map(|(k, v)| (k, v.unwrap_or(0.0))).collect(),
                ));
            }
            Response::DescribeQuotas(out)
        }
        fb::Response::AlterQuotasResponse => {
            let a = env.response_as_alter_quotas_response().ok_or(missing)?;
            let results = a
                .entries()
                .iter()
                .flatten()
                .map(|q| read_quota_entry(&q).map(|(_, _, e)| e))
                .collect::<Result<_, _>>()?;
            Response::AlterQuotas(results)
        }
        fb::Response::SaslAuthenticateResponse => {
            let a = env
                .response_as_sasl_authenticate_response()
                .ok_or(missing)?;
            Response::SaslAuthenticate {
                token: a
                    .auth_bytes()
                    .map(|b| bytes::Bytes::copy_from_slice(b.bytes()))
                    .unwrap_or_default(),
                done: a.done(),
            }
        }
        _ => return Ok(None),
    }))
}
