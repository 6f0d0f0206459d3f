//! The records the group coordinator writes to `__consumer_offsets`, in Kafka's own schemas, so
//! the topic reads the same as a Kafka broker's (`kafka-console-consumer --formatter
//! ...OffsetsMessageFormatter` would decode it).
//!
//! Each record is a Kafka record whose key starts with an i16 key version that names the type:
//!
//! ```text
//! OffsetCommitKey v1 (written; v0 read):   version i16 = 1 | group string | topic string | partition i32
//! OffsetCommitValue v3:                    version i16 = 3 | offset i64 | leader_epoch i32
//!                                          | metadata string | commit_timestamp i64
//! GroupMetadataKey v2:                     version i16 = 2 | group string
//! GroupMetadataValue v3:                   version i16 = 3 | protocol_type string | generation i32
//!                                          | protocol nullable string | leader nullable string
//!                                          | current_state_timestamp i64
//!                                          | members array: i32 count, then per member:
//!                                            member_id string | group_instance_id nullable string
//!                                            | client_id string | client_host string
//!                                            | rebalance_timeout i32 | session_timeout i32
//!                                            | subscription bytes | assignment bytes
//! ```
//! `string` is an i16 length and UTF-8 bytes (-1 = null where nullable); `bytes` an i32 length.
//! A record with a null value is a tombstone: it deletes the offset or the group.
//! Values are read at the versions Kafka has written (offset values v0-v3, group values v0-v3)
//! and refused otherwise (the broker logs and skips a record it cannot read).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's membership as of its last completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// One record of `__consumer_offsets`; `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
}

/// A `__consumer_offsets` record that does not decode.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record ends early while reading {what}")]
    Truncated { what: &'static str },
    #[error("record field {what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("record field {what} is null but may not be")]
    UnexpectedNull { what: &'static str },
    #[error("unknown record key version {version}")]
    UnknownKeyVersion { version: i16 },
    #[error("unknown {what} value version {version}")]
    UnknownValueVersion { what: &'static str, version: i16 },
    #[error("record has no key")]
    NoKey,
}

impl CoordinatorRecord {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            CoordinatorRecord::Offset { group, .. } | CoordinatorRecord::Group { group, .. } => {
                group
            }
        }
    }

    /// Encodes the record's key and value (`None` for a tombstone).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            CoordinatorRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_i16(OFFSET_KEY_VERSION);
                put_string(&mut key, group);
                put_string(&mut key, topic);
                key.put_i32(*partition);
                (key.freeze(), value.as_ref().map(encode_offset_value))
            }
            CoordinatorRecord::Group { group, value } => {
                key.put_i16(GROUP_KEY_VERSION);
                put_string(&mut key, group);
                (key.freeze(), value.as_ref().map(encode_group_value))
            }
        }
    }

    /// Decodes a record's key and value.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Self, RecordError> {
        let mut key = key.ok_or(RecordError::NoKey)?;
        let version = get_i16(&mut key, "key version")?;
        match version {
            0 | 1 => {
                let group = get_string(&mut key, "group")?;
                let topic = get_string(&mut key, "topic")?;
                let partition = get_i32(&mut key, "partition")?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(CoordinatorRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group = get_string(&mut key, "group")?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(CoordinatorRecord::Group { group, value })
            }
            version => Err(RecordError::UnknownKeyVersion { version }),
        }
    }
}

fn encode_offset_value(value: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    put_string(&mut buf, &value.metadata);
    buf.put_i64(value.commit_timestamp_ms);
    buf.freeze()
}

fn decode_offset_value(mut buf: &[u8]) -> Result<OffsetValue, RecordError> {
    let version = get_i16(&mut buf, "offset value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion {
            what: "offset",
            version,
        });
    }
    let offset = get_i64(&mut buf, "offset")?;
    let leader_epoch = if version >= 3 {
        get_i32(&mut buf, "leader epoch")?
    } else {
        -1
    };
    let metadata = get_string(&mut buf, "metadata")?;
    let commit_timestamp_ms = get_i64(&mut buf, "commit timestamp")?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn encode_group_value(value: &GroupValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut buf, &value.protocol_type);
    buf.put_i32(value.generation);
    put_nullable_string(&mut buf, value.protocol.as_deref());
    put_nullable_string(&mut buf, value.leader.as_deref());
    buf.put_i64(value.current_state_timestamp_ms);
    buf.put_i32(value.members.len() as i32);
    for member in &value.members {
        put_string(&mut buf, &member.member_id);
        put_nullable_string(&mut buf, member.group_instance_id.as_deref());
        put_string(&mut buf, &member.client_id);
        put_string(&mut buf, &member.client_host);
        buf.put_i32(member.rebalance_timeout_ms);
        buf.put_i32(member.session_timeout_ms);
        put_bytes(&mut buf, &member.subscription);
        put_bytes(&mut buf, &member.assignment);
    }
    buf.freeze()
}

fn decode_group_value(mut buf: &[u8]) -> Result<GroupValue, RecordError> {
    let version = get_i16(&mut buf, "group value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion {
            what: "group",
            version,
        });
    }
    let protocol_type = get_string(&mut buf, "protocol type")?;
    let generation = get_i32(&mut buf, "generation")?;
    let protocol = get_nullable_string(&mut buf, "protocol")?;
    let leader = get_nullable_string(&mut buf, "leader")?;
    let current_state_timestamp_ms = if version >= 2 {
        get_i64(&mut buf, "current state timestamp")?
    } else {
        -1
    };
    let count = get_i32(&mut buf, "member count")?.max(0) as usize;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = get_string(&mut buf, "member id")?;
        let group_instance_id = if version >= 3 {
            get_nullable_string(&mut buf, "group instance id")?
        } else {
            None
        };
        let client_id = get_string(&mut buf, "client id")?;
        let client_host = get_string(&mut buf, "client host")?;
        let session_first = version == 0;
        let (rebalance_timeout_ms, session_timeout_ms) = if session_first {
            let session = get_i32(&mut buf, "session timeout")?;
            (session, session)
        } else {
            let rebalance = get_i32(&mut buf, "rebalance timeout")?;
            (rebalance, get_i32(&mut buf, "session timeout")?)
        };
        let subscription = get_bytes(&mut buf, "subscription")?;
        let assignment = get_bytes(&mut buf, "assignment")?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// A Kafka `STRING`: an i16 length, then the bytes (shared with `transaction::record`).
pub(crate) fn put_string(buf: &mut BytesMut, value: &str) {
    buf.put_i16(value.len() as i16);
    buf.put_slice(value.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(value) => put_string(buf, value),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, value: &[u8]) {
    buf.put_i32(value.len() as i32);
    buf.put_slice(value);
}

fn get_i16(buf: &mut &[u8], what: &'static str) -> Result<i16, RecordError> {
    if buf.remaining() < 2 {
        return Err(RecordError::Truncated { what });
    }
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut &[u8], what: &'static str) -> Result<i32, RecordError> {
    if buf.remaining() < 4 {
        return Err(RecordError::Truncated { what });
    }
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8], what: &'static str) -> Result<i64, RecordError> {
    if buf.remaining() < 8 {
        return Err(RecordError::Truncated { what });
    }
    Ok(buf.get_i64())
}

fn get_nullable_string(buf: &mut &[u8], what: &'static str) -> Result<Option<String>, RecordError> {
    let length = get_i16(buf, what)?;
    if length < 0 {
        return Ok(None);
    }
    let length = length as usize;
    if buf.remaining() < length {
        return Err(RecordError::Truncated { what });
    }
    let text = std::str::from_utf8(&buf[..length])
        .map_err(|_| RecordError::NotUtf8 { what })?
        .to_string();
    buf.advance(length);
    Ok(Some(text))
}

fn get_string(buf: &mut &[u8], what: &'static str) -> Result<String, RecordError> {
    get_nullable_string(buf, what)?.ok_or(RecordError::UnexpectedNull { what })
}

fn get_bytes(buf: &mut &[u8], what: &'static str) -> Result<Bytes, RecordError> {
    let length = get_i32(buf, what)?;
    if length < 0 {
        return Ok(Bytes::new());
    }
    let length = length as usize;
    if buf.remaining() < length {
        return Err(RecordError::Truncated { what });
    }
    let bytes = Bytes::copy_from_slice(&buf[..length]);
    buf.advance(length);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(record: CoordinatorRecord) {
        let (key, value) = record.encode();
        let decoded = CoordinatorRecord::decode(Some(&key), value.as_deref()).expect("decodes");
        assert_eq!(decoded, record);
    }

    #[test]
    fn offset_records_round_trip_in_kafkas_layout() {
        let record = CoordinatorRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(OffsetValue {
                offset: 42,
                leader_epoch: 0,
                metadata: "meta".into(),
                commit_timestamp_ms: 1_700_000_000_000,
            }),
        };
        let (key, value) = record.encode();
        assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]);
        let value = value.expect("a value");
        assert_eq!(&value[..2], &[0, 3]);
        assert_eq!(value.len(), 2 + 8 + 4 + 2 + 4 + 8);
        round_trip(record);
        round_trip(CoordinatorRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: None,
        });
    }

    #[test]
    fn group_records_round_trip() {
        round_trip(CoordinatorRecord::Group {
            group: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 7,
                protocol: Some("range".into()),
                leader: Some("m-1".into()),
                current_state_timestamp_ms: 5,
                members: vec![MemberValue {
                    member_id: "m-1".into(),
                    group_instance_id: Some("i-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        });
        round_trip(CoordinatorRecord::Group {
            group: "g".into(),
            value: None,
        });
    }

    #[test]
    fn damaged_records_are_refused() {
        assert_eq!(
            CoordinatorRecord::decode(Some(&[0, 9]), None),
            Err(RecordError::UnknownKeyVersion { version: 9 })
        );
        assert!(CoordinatorRecord::decode(Some(&[0, 1, 0, 5, b'g']), None).is_err());
        assert_eq!(
            CoordinatorRecord::decode(None, None),
            Err(RecordError::NoKey)
        );
        let key = [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3];
        assert!(CoordinatorRecord::decode(Some(&key), Some(&[0, 3, 0])).is_err());
    }
}
