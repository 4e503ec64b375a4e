//! The ACL family of the native wire: DescribeAcls and AlterAcls (Kafka's
//! DescribeAcls, CreateAcls and DeleteAcls for `shardlog acl`), typed
//! <-> flatbuffers.
//!
//! Owns: `AclEntry` both ways, as a binding and as a filter (an absent
//! string matches any). A code none of Kafka's is a decode error: the
//! request or answer is refused whole, never guessed.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::fb::{err_code, err_of, opt_str, DecodeError, ReqBody, RespBody};
use super::generated as fb;
use super::{Request, Response};
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};

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
        _ => return Ok(None),
    }))
}
