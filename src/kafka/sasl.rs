//! SASL and SCRAM users over Kafka: SaslHandshake (v1: the tokens go in
//! SaslAuthenticate, KIP-152), SaslAuthenticate, DescribeUserScramCredentials
//! and AlterUserScramCredentials (KIP-554), decoded into the door's work and
//! answered from the connection's authenticator and the users table.
//!
//! Owns: their translation both ways (pure).
//!
//! Must never: put a password, a salted password or a key into an answer
//! or a log line; only names, mechanisms and iteration counts leave.

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

use super::wire::{encode_frame, SaslWork, UsersWork, Work};
use crate::errors::kafka_code;
use crate::protocol::WireError;
use crate::security::users::{UserChange, Users};

fn s(v: &StrBytes) -> String {
    v.as_str().to_owned()
}

pub(super) fn decode_handshake(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = SaslHandshakeRequest::decode(body, version)?;
    Ok(Work::Sasl(SaslWork::Handshake(s(&r.mechanism))))
}

pub(super) fn decode_authenticate(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = SaslAuthenticateRequest::decode(body, version)?;
    Ok(Work::Sasl(SaslWork::Authenticate(r.auth_bytes)))
}

pub(super) fn decode_describe_users(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = DescribeUserScramCredentialsRequest::decode(body, version)?;
    Ok(Work::Users(UsersWork::Describe(
        r.users.map(|us| us.iter().map(|u| s(&u.name)).collect()),
    )))
}

pub(super) fn decode_alter_users(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = AlterUserScramCredentialsRequest::decode(body, version)?;
    let mut changes: Vec<UserChange> = r
        .deletions
        .iter()
        .map(|d| UserChange::Delete {
            user: s(&d.name),
            mechanism: d.mechanism,
        })
        .collect();
    changes.extend(r.upsertions.iter().map(|u| UserChange::Upsert {
        user: s(&u.name),
        mechanism: u.mechanism,
        iterations: u.iterations,
        salt: u.salt.to_vec(),
        salted_password: u.salted_password.to_vec(),
    }));
    Ok(Work::Users(UsersWork::Alter(changes)))
}

/// SaslHandshake's answer: the error, and the mechanisms the listener
/// accepts (what a client picks from after UNSUPPORTED_SASL_MECHANISM).
pub(super) fn handshake_response(
    version: i16,
    correlation_id: i32,
    error: Option<&WireError>,
    enabled: &[&'static str],
) -> anyhow::Result<Bytes> {
    let mut r = SaslHandshakeResponse::default();
    r.error_code = kafka_code(error);
    r.mechanisms = enabled
        .iter()
        .map(|m| StrBytes::from_static_str(m))
        .collect();
    encode_frame(ApiKey::SaslHandshake, version, correlation_id, &r)
}

/// SaslAuthenticate's answer: the mechanism's next bytes with the
/// session's lifetime in ms (0 until the last step, and when sessions do
/// not expire; v1+ carries it, and a client re-authenticates before it
/// ends, KIP-368), or the error.
pub(super) fn authenticate_response(
    version: i16,
    correlation_id: i32,
    result: Result<(Vec<u8>, i64), &WireError>,
) -> anyhow::Result<Bytes> {
    let mut r = SaslAuthenticateResponse::default();
    match result {
        Ok((bytes, lifetime_ms)) => {
            r.auth_bytes = Bytes::from(bytes);
            if version >= 1 {
                r.session_lifetime_ms = lifetime_ms;
            }
        }
        Err(e) => {
            r.error_code = kafka_code(Some(e));
            r.error_message = Some(StrBytes::from_string(e.message.clone()));
        }
    }
    encode_frame(ApiKey::SaslAuthenticate, version, correlation_id, &r)
}

/// DescribeUserScramCredentials from this shard's copy of the users: all
/// of them (no names), or the named ones, each unknown one
/// RESOURCE_NOT_FOUND and one named twice DUPLICATE_RESOURCE, as Kafka.
pub(super) fn describe_users_response(
    version: i16,
    correlation_id: i32,
    users: &Users,
    names: Option<&[String]>,
) -> anyhow::Result<Bytes> {
    let mut r = DescribeUserScramCredentialsResponse::default();
    let rows = users.describe(names);
    r.results = rows
        .into_iter()
        .enumerate()
        .map(|(i, (name, row))| {
            let mut x = DescribeUserScramCredentialsResult::default();
            x.user = StrBytes::from_string(name.clone());
            let twice = names.is_some_and(|ns| ns.iter().take(i).any(|n| *n == name));
            match row {
                _ if twice => {
                    x.error_code = ResponseError::DuplicateResource.code();
                    x.error_message =
                        Some(StrBytes::from_string(format!("user {name:?} named twice")));
                }
                Ok(creds) => {
                    x.credential_infos = creds
                        .into_iter()
                        .map(|c| {
                            let mut ci = CredentialInfo::default();
                            ci.mechanism = c.mechanism.kafka_type();
                            ci.iterations = c.iterations as i32;
                            ci
                        })
                        .collect();
                }
                Err(e) => {
                    let w = crate::errors::ToWire::to_wire(&e);
                    x.error_code = kafka_code(Some(&w));
                    x.error_message = Some(StrBytes::from_string(w.message));
                }
            }
            x
        })
        .collect();
    encode_frame(
        ApiKey::DescribeUserScramCredentials,
        version,
        correlation_id,
        &r,
    )
}

/// AlterUserScramCredentials' answer: each user's result.
pub(super) fn alter_users_response(
    version: i16,
    correlation_id: i32,
    results: Result<Vec<(String, Option<WireError>)>, WireError>,
    asked: &[UserChange],
) -> anyhow::Result<Bytes> {
    let mut r = AlterUserScramCredentialsResponse::default();
    let rows: Vec<(String, Option<WireError>)> = match results {
        Ok(rows) => rows,
        // The change as a whole failed (the controller could not write):
        // every user gets that error.
        Err(e) => {
            let mut users: Vec<String> = Vec::new();
            for c in asked {
                if !users.iter().any(|u| u == c.user()) {
                    users.push(c.user().to_owned());
                }
            }
            users.into_iter().map(|u| (u, Some(e.clone()))).collect()
        }
    };
    r.results = rows
        .into_iter()
        .map(|(user, e)| {
            let mut x = AlterUserScramCredentialsResult::default();
            x.user = StrBytes::from_string(user);
            x.error_code = kafka_code(e.as_ref());
            x.error_message = e.map(|e| StrBytes::from_string(e.message));
            x
        })
        .collect();
    encode_frame(
        ApiKey::AlterUserScramCredentials,
        version,
        correlation_id,
        &r,
    )
}

/// A whole request of this file's refused with Kafka's `error`.
pub(super) fn refuse(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    error: i16,
) -> anyhow::Result<Bytes> {
    match api {
        ApiKey::SaslHandshake => {
            let mut r = SaslHandshakeResponse::default();
            r.error_code = error;
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::SaslAuthenticate => {
            let mut r = SaslAuthenticateResponse::default();
            r.error_code = error;
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::DescribeUserScramCredentials => {
            let mut r = DescribeUserScramCredentialsResponse::default();
            r.error_code = error;
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::AlterUserScramCredentials => encode_frame(
            api,
            version,
            correlation_id,
            &AlterUserScramCredentialsResponse::default(),
        ),
        other => anyhow::bail!("{other:?} is not a SASL or SCRAM users API"),
    }
}

/// Is `api` one of this file's?
pub(super) fn is_sasl_api(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::SaslHandshake
            | ApiKey::SaslAuthenticate
            | ApiKey::DescribeUserScramCredentials
            | ApiKey::AlterUserScramCredentials
    )
}
