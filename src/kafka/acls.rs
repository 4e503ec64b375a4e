//! ACLs over Kafka (KIP-11, KIP-140, KIP-290): CreateAcls, DescribeAcls
//! and DeleteAcls, decoded into the door's work and answered from the
//! ACLs' results.
//!
//! Owns: their translation both ways (pure): Kafka's codes into the ACL
//! model's types, with a binding or filter the model cannot hold refused
//! on its own (INVALID_REQUEST) and the others still served.
//!
//! Must never: decide who may change or read ACLs (the door's authorizer
//! does, on the cluster resource), or store anything.

use bytes::Bytes;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

use super::wire::{encode_frame, AclsWork, InvalidAcl as Invalid, Work};
use crate::errors::kafka_code;
use crate::protocol::WireError;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};

fn s(v: &StrBytes) -> String {
    v.as_str().to_owned()
}

fn code<T>(what: &str, c: i8, from: fn(i8) -> Option<T>) -> Result<T, Invalid> {
    from(c).ok_or_else(|| format!("unknown {what} code {c}"))
}

/// The four codes of a binding or filter.
type Codes = (ResourceType, PatternType, Operation, Permission);

fn codes(rt: i8, pt: i8, op: i8, perm: i8) -> Result<Codes, Invalid> {
    Ok((
        code("resource type", rt, ResourceType::from_code)?,
        code("pattern type", pt, PatternType::from_code)?,
        code("operation", op, Operation::from_code)?,
        code("permission", perm, Permission::from_code)?,
    ))
}

pub(super) fn decode_create(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = CreateAclsRequest::decode(body, version)?;
    let creations = r
        .creations
        .iter()
        .map(|c| {
            let (resource_type, pattern, operation, permission) = codes(
                c.resource_type,
                c.resource_pattern_type,
                c.operation,
                c.permission_type,
            )?;
            let b = AclBinding {
                resource_type,
                name: s(&c.resource_name),
                pattern,
                principal: s(&c.principal),
                host: s(&c.host),
                operation,
                permission,
            };
            b.validate().map_err(|e| e.to_string())?;
            Ok(b)
        })
        .collect();
    Ok(Work::Acls(AclsWork::Create(creations)))
}

#[allow(clippy::too_many_arguments)]
fn filter(
    rt: i8,
    name: Option<&StrBytes>,
    pt: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    op: i8,
    perm: i8,
) -> Result<AclFilter, Invalid> {
    let (resource_type, pattern, operation, permission) = codes(rt, pt, op, perm)?;
    Ok(AclFilter {
        resource_type,
        name: name.map(s),
        pattern,
        principal: principal.map(s),
        host: host.map(s),
        operation,
        permission,
    })
}

pub(super) fn decode_describe(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = DescribeAclsRequest::decode(body, version)?;
    Ok(Work::Acls(AclsWork::Describe(filter(
        r.resource_type_filter,
        r.resource_name_filter.as_ref(),
        r.pattern_type_filter,
        r.principal_filter.as_ref(),
        r.host_filter.as_ref(),
        r.operation,
        r.permission_type,
    ))))
}

pub(super) fn decode_delete(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = DeleteAclsRequest::decode(body, version)?;
    let filters = r
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    Ok(Work::Acls(AclsWork::Delete(filters)))
}

/// An error as Kafka's answers carry it: the code and a message.
pub type KafkaError = (i16, String);

pub(super) fn kafka_error(e: &WireError) -> KafkaError {
    (kafka_code(Some(e)), e.message.clone())
}

/// An invalid binding's or filter's error (Kafka: INVALID_REQUEST).
pub(super) fn invalid(why: &str) -> KafkaError {
    (ResponseError::InvalidRequest.code(), why.to_owned())
}

fn fields(e: &KafkaError) -> (i16, Option<StrBytes>) {
    (e.0, Some(StrBytes::from_string(e.1.clone())))
}

/// CreateAcls' answer: one result per creation, in request order.
pub(super) fn create_response(
    version: i16,
    correlation_id: i32,
    results: &[Result<(), KafkaError>],
) -> anyhow::Result<Bytes> {
    let mut r = CreateAclsResponse::default();
    r.results = results
        .iter()
        .map(|res| {
            let mut c = AclCreationResult::default();
            if let Err(e) = res {
                (c.error_code, c.error_message) = fields(e);
            }
            c
        })
        .collect();
    encode_frame(ApiKey::CreateAcls, version, correlation_id, &r)
}

/// DescribeAcls' answer: the bindings grouped by resource pattern, or the
/// request's error.
pub(super) fn describe_response(
    version: i16,
    correlation_id: i32,
    result: Result<Vec<AclBinding>, KafkaError>,
) -> anyhow::Result<Bytes> {
    let mut r = DescribeAclsResponse::default();
    match result {
        Err(e) => (r.error_code, r.error_message) = fields(&e),
        Ok(bindings) => {
            // The model keeps bindings ordered by resource type, name and
            // pattern first: one resource's bindings are adjacent.
            for b in bindings {
                let mut d = AclDescription::default();
                d.principal = StrBytes::from_string(b.principal.clone());
                d.host = StrBytes::from_string(b.host.clone());
                d.operation = b.operation.code();
                d.permission_type = b.permission.code();
                let same = r
                    .resources
                    .last()
                    .is_some_and(|res: &DescribeAclsResource| {
                        res.resource_type == b.resource_type.code()
                            && res.resource_name.as_str() == b.name
                            && res.pattern_type == b.pattern.code()
                    });
                if !same {
                    let mut res = DescribeAclsResource::default();
                    res.resource_type = b.resource_type.code();
                    res.resource_name = StrBytes::from_string(b.name.clone());
                    res.pattern_type = b.pattern.code();
                    r.resources.push(res);
                }
                r.resources.last_mut().expect("pushed").acls.push(d);
            }
        }
    }
    encode_frame(ApiKey::DescribeAcls, version, correlation_id, &r)
}

/// DeleteAcls' answer: per filter, in request order, the bindings it
/// removed or its error.
pub(super) fn delete_response(
    version: i16,
    correlation_id: i32,
    results: &[Result<Vec<AclBinding>, KafkaError>],
) -> anyhow::Result<Bytes> {
    let mut r = DeleteAclsResponse::default();
    r.filter_results = results
        .iter()
        .map(|res| {
            let mut f = DeleteAclsFilterResult::default();
            match res {
                Err(e) => (f.error_code, f.error_message) = fields(e),
                Ok(gone) => {
                    f.matching_acls = gone
                        .iter()
                        .map(|b| {
                            let mut m = DeleteAclsMatchingAcl::default();
                            m.resource_type = b.resource_type.code();
                            m.resource_name = StrBytes::from_string(b.name.clone());
                            m.pattern_type = b.pattern.code();
                            m.principal = StrBytes::from_string(b.principal.clone());
                            m.host = StrBytes::from_string(b.host.clone());
                            m.operation = b.operation.code();
                            m.permission_type = b.permission.code();
                            m
                        })
                        .collect();
                }
            }
            f
        })
        .collect();
    encode_frame(ApiKey::DeleteAcls, version, correlation_id, &r)
}

pub(super) fn is_acl_api(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::CreateAcls | ApiKey::DescribeAcls | ApiKey::DeleteAcls
    )
}

/// The whole request refused with Kafka's `error` (as Kafka's
/// getErrorResponse): every creation or filter (`shape` has one entry per
/// creation or filter), or DescribeAcls' request error.
pub(super) fn refuse(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    shape: &super::wire::Shape,
    error: i16,
) -> anyhow::Result<Bytes> {
    let e: KafkaError = (error, String::new());
    match api {
        ApiKey::CreateAcls => create_response(version, correlation_id, &vec![Err(e); shape.len()]),
        ApiKey::DeleteAcls => delete_response(version, correlation_id, &vec![Err(e); shape.len()]),
        _ => describe_response(version, correlation_id, Err(e)),
    }
}

impl AclsWork {
    /// One shape entry per creation or filter (what a whole-request
    /// refusal answers).
    pub fn shape(&self) -> super::wire::Shape {
        let n = match self {
            AclsWork::Create(c) => c.len(),
            AclsWork::Delete(f) => f.len(),
            AclsWork::Describe(_) => 1,
        };
        vec![(String::new(), vec![]); n]
    }
}
