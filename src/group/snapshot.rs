//! A classic group's durable image: the record of the offsets log that lets
//! a classic group (JoinGroup/SyncGroup) outlive a broker restart with its
//! members, generation, leader and assignments, as Kafka's GroupMetadata
//! records in `__consumer_offsets` do. Without it a restart forgets every
//! member: their next commit is refused (UNKNOWN_MEMBER_ID), the group
//! rebalances, and what was processed since the last commit is processed
//! again (a Kafka Connect sink writes it twice).
//!
//! Owns: `GroupImage` and its key/value encoding; which keys of the offsets
//! log are group images (`is_image_key`).
//!
//! Must never: panic on bytes read back from the log (every length, count,
//! version and string is checked), or hand back an image a `Stable` group
//! could not hold (no members, a leader that is not a member, a member id
//! twice, a session timeout outside the accepted range).
//!
//! Key (the offsets log's key versions 1 and 2 are offset commits):
//! `u16 3 | u16 len | group`. A tombstone: the group has no members.
//! Value, version 1 (big-endian; strings u16-length-prefixed UTF-8, blobs
//! u32-length-prefixed):
//! `u16 1 | i32 generation | str protocol_type | str protocol | str leader |
//! u32 members | per member: str id | u8 has_instance [str instance] |
//! str client_id | str client_host | u32 session_timeout_ms |
//! u32 rebalance_timeout_ms | blob subscription | blob assignment`.

use bytes::{BufMut, Bytes, BytesMut};

use super::ids::{
    CLASSIC_MAX_MEMBERS as MAX_MEMBERS, CLASSIC_SESSION_TIMEOUT_MS as SESSION_TIMEOUT_MS,
    MAX_BLOB_BYTES, MAX_ID_BYTES,
};
use super::reader::{Malformed, Reader};

/// The offsets log's key version of a group image.
pub const IMAGE_KEY_VERSION: u16 = 3;
pub const IMAGE_VALUE_VERSION: u16 = 1;
/// Client ids, hosts, protocol names: Kafka strings (i16 length).
const MAX_TEXT_BYTES: usize = i16::MAX as usize;

/// One member of a stable classic group, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberImage {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// Its metadata for the group's protocol (what it subscribed with).
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A stable classic group, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupImage {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub members: Vec<MemberImage>,
}

/// Whether an offsets-log key is a group image's.
pub fn is_image_key(key: &[u8]) -> bool {
    key.len() >= 2 && u16::from_be_bytes([key[0], key[1]]) == IMAGE_KEY_VERSION
}

pub fn encode_key(group: &str) -> Bytes {
    // Group ids are checked against MAX_ID_BYTES (< u16::MAX) on join.
    assert!(group.len() <= MAX_ID_BYTES, "a group id within its bound");
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_u16(IMAGE_KEY_VERSION);
    b.put_u16(group.len() as u16);
    b.put_slice(group.as_bytes());
    b.freeze()
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Every string here passed a bound below u16::MAX when it came in.
    let n = s.len().min(u16::MAX as usize);
    b.put_u16(n as u16);
    b.put_slice(&s.as_bytes()[..n]);
}

fn put_blob(b: &mut BytesMut, s: &[u8]) {
    b.put_u32(s.len() as u32);
    b.put_slice(s);
}

impl GroupImage {
    pub fn encode(&self) -> Bytes {
        let size: usize = 64
            + self
                .members
                .iter()
                .map(|m| {
                    64 + m.id.len()
                        + m.client_id.len()
                        + m.client_host.len()
                        + m.instance_id.as_ref().map_or(0, String::len)
                        + m.subscription.len()
                        + m.assignment.len()
                })
                .sum::<usize>();
        let mut b = BytesMut::with_capacity(size);
        b.put_u16(IMAGE_VALUE_VERSION);
        b.put_i32(self.generation);
        put_str(&mut b, &self.protocol_type);
        put_str(&mut b, &self.protocol);
        put_str(&mut b, &self.leader);
        b.put_u32(self.members.len() as u32);
        for m in &self.members {
            put_str(&mut b, &m.id);
            match &m.instance_id {
                Some(i) => {
                    b.put_u8(1);
                    put_str(&mut b, i);
                }
                None => b.put_u8(0),
            }
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_u32(m.session_timeout_ms);
            b.put_u32(m.rebalance_timeout_ms);
            put_blob(&mut b, &m.subscription);
            put_blob(&mut b, &m.assignment);
        }
        b.freeze()
    }
}

fn blob(r: &mut Reader<'_>, what: &'static str) -> Result<Bytes, Malformed> {
    let n = r.u32(what)? as usize;
    if n > MAX_BLOB_BYTES {
        return Err(Malformed(format!(
            "{what} of {n} bytes exceeds {MAX_BLOB_BYTES}"
        )));
    }
    Ok(Bytes::copy_from_slice(r.take(n, what)?))
}

/// Decodes one group-image record: the group and its image (`None`: a
/// tombstone, the group has no members).
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<(String, Option<GroupImage>), Malformed> {
    let mut r = Reader::new(key);
    let version = r.u16("key version")?;
    if version != IMAGE_KEY_VERSION {
        return Err(Malformed(format!(
            "key version {version} is not a group image's"
        )));
    }
    let group = r.string("group id", MAX_ID_BYTES)?;
    r.finish()?;
    if group.is_empty() {
        return Err(Malformed("an empty group id".into()));
    }
    let Some(value) = value else {
        return Ok((group, None));
    };
    let mut r = Reader::new(value);
    let version = r.u16("value version")?;
    if version != IMAGE_VALUE_VERSION {
        return Err(Malformed(format!("unknown group image version {version}")));
    }
    let generation = r.i32("generation")?;
    if generation < 1 {
        return Err(Malformed(format!("generation {generation}")));
    }
    let protocol_type = r.string("protocol type", MAX_TEXT_BYTES)?;
    let protocol = r.string("protocol", MAX_TEXT_BYTES)?;
    let leader = r.string("leader", MAX_ID_BYTES)?;
    let count = r.u32("member count")? as usize;
    if count == 0 || count > MAX_MEMBERS {
        return Err(Malformed(format!("{count} members")));
    }
    let mut members: Vec<MemberImage> = Vec::new();
    for _ in 0..count {
        let id = r.string("member id", MAX_ID_BYTES)?;
        let instance_id = match r.u8("instance flag")? {
            0 => None,
            1 => Some(r.string("instance id", MAX_ID_BYTES)?),
            f => return Err(Malformed(format!("instance flag {f}"))),
        };
        let client_id = r.string("client id", MAX_TEXT_BYTES)?;
        let client_host = r.string("client host", MAX_TEXT_BYTES)?;
        let session_timeout_ms = r.u32("session timeout")?;
        if !SESSION_TIMEOUT_MS.contains(&session_timeout_ms) {
            return Err(Malformed(format!(
                "session timeout {session_timeout_ms} ms"
            )));
        }
        let rebalance_timeout_ms = r.u32("rebalance timeout")?;
        let subscription = blob(&mut r, "subscription")?;
        let assignment = blob(&mut r, "assignment")?;
        if members.iter().any(|m| m.id == id) {
            return Err(Malformed(format!("member {id:?} twice")));
        }
        members.push(MemberImage {
            id,
            instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            subscription,
            assignment,
        });
    }
    r.finish()?;
    if !members.iter().any(|m| m.id == leader) {
        return Err(Malformed(format!("leader {leader:?} is not a member")));
    }
    let instances = members.iter().filter_map(|m| m.instance_id.as_deref());
    let mut seen = std::collections::BTreeSet::new();
    for i in instances {
        if !seen.insert(i) {
            return Err(Malformed(format!("static instance {i:?} twice")));
        }
    }
    Ok((
        group,
        Some(GroupImage {
            generation,
            protocol_type,
            protocol,
            leader,
            members,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> GroupImage {
        GroupImage {
            generation: 7,
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            leader: "b-2".into(),
            members: vec![
                MemberImage {
                    id: "a-1".into(),
                    instance_id: None,
                    client_id: "a".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 45_000,
                    rebalance_timeout_ms: 300_000,
                    subscription: Bytes::from_static(b"\0\x01sub"),
                    assignment: Bytes::from_static(b"\0\x01asg"),
                },
                MemberImage {
                    id: "b-2".into(),
                    instance_id: Some("pod-2".into()),
                    client_id: "b".into(),
                    client_host: "/10.0.0.2".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 10_000,
                    subscription: Bytes::new(),
                    assignment: Bytes::from_static(b"x"),
                },
            ],
        }
    }

    #[test]
    fn an_image_reads_back_as_written_and_tombstones_name_the_group() {
        let key = encode_key("billing");
        assert!(is_image_key(&key));
        assert!(!is_image_key(&[0, 1, 0, 0]), "an offset commit's key");
        let v = image().encode();
        assert_eq!(
            decode(&key, Some(&v)).unwrap(),
            ("billing".to_string(), Some(image()))
        );
        assert_eq!(decode(&key, None).unwrap(), ("billing".to_string(), None));
    }

    #[test]
    fn images_a_stable_group_could_not_hold_are_refused() {
        let key = encode_key("g");
        let mut no_leader = image();
        no_leader.leader = "c-3".into();
        let mut twice = image();
        twice.members[1].id = "a-1".into();
        twice.leader = "a-1".into();
        let mut none = image();
        none.members.clear();
        let mut short_session = image();
        short_session.members[0].session_timeout_ms = 10;
        let mut gen0 = image();
        gen0.generation = 0;
        for (bad, why) in [
            (no_leader, "not a member"),
            (twice, "twice"),
            (none, "0 members"),
            (short_session, "session timeout"),
            (gen0, "generation 0"),
        ] {
            let e = decode(&key, Some(&bad.encode())).unwrap_err();
            assert!(e.0.contains(why), "{e:?} for {why}");
        }
        let mut trailing = image().encode().to_vec();
        trailing.push(0);
        assert!(decode(&key, Some(&trailing)).is_err());
        assert!(decode(&[0, 3, 0, 0], None).is_err(), "an empty group id");
        assert!(
            decode(&[0, 1, 0, 1, b'g'], None).is_err(),
            "not an image key"
        );
    }

    proptest::proptest! {
        #[test]
        fn fuzz_group_images_never_panic_on_damaged_records(
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
            cut in proptest::option::of(proptest::prelude::any::<usize>()),
        ) {
            let k = encode_key("group-1").to_vec();
            let mut v = image().encode().to_vec();
            for (i, b) in edits {
                let n = v.len();
                v[i % n] = b;
            }
            if let Some(c) = cut { v.truncate(c % (v.len() + 1)) }
            let _ = decode(&k, Some(&v));
        }

        #[test]
        fn fuzz_group_images_never_panic_on_garbage(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
        ) {
            let _ = decode(&encode_key("g"), Some(&value));
        }
    }
}
