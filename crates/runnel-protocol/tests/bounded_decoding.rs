//! The codec never believes a count or length from the wire before checking it against the
//! bytes left: each test hands a decoder a few bytes claiming billions of elements or bytes and
//! expects an error. Before the patches in `vendor/kafka-protocol` (RUNNEL-PATCHES.md) the
//! array cases aborted the test process ("memory allocation of 154618822584 bytes failed"):
//! that abort is how they fail.
//!
//! Kafka behaviour pinned: the generated readers' check in `MessageDataGenerator`
//! ("Tried to allocate a collection of size N, but there are only M bytes remaining.").

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable};
use kafka_protocol::records::RecordBatchDecoder;
use runnel_protocol::header::{decode_body, CodecError};

/// A 5-byte unsigned varint holding `u32::MAX`: a compact count of 4,294,967,294.
const HUGE_UNSIGNED_VARINT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

fn refused<T: Decodable + std::fmt::Debug>(api: ApiKey, version: i16, body: &[u8]) -> String {
    let mut body = Bytes::copy_from_slice(body);
    match decode_body::<T>(api, version, &mut body) {
        Err(CodecError::MalformedBody { reason, .. }) => reason,
        other => panic!("{api:?} v{version}: expected a malformed body, got {other:?}"),
    }
}

#[test]
fn a_huge_array_count_is_refused_before_allocating() {
    // Metadata v1: topics array, i32 count 0x7fffffff and nothing after it: the 21-byte frame
    // of the issue without its size prefix and header.
    let reason = refused::<MetadataRequest>(ApiKey::Metadata, 1, &0x7fff_ffffi32.to_be_bytes());
    assert_eq!(
        reason,
        "Tried to allocate a collection of size 2147483647, but there are only 0 bytes remaining."
    );
    // Metadata v12: a compact array, count + 1 as an unsigned varint.
    let reason = refused::<MetadataRequest>(ApiKey::Metadata, 12, &HUGE_UNSIGNED_VARINT);
    assert!(reason.contains("collection of size 4294967294"), "{reason}");
}

#[test]
fn a_huge_nested_array_count_is_refused() {
    // Produce v3: transactional id (null), acks, timeout, one topic "t", its partitions array
    // with a count of 0x7fffffff.
    let mut body = BytesMut::new();
    body.put_i16(-1);
    body.put_i16(-1);
    body.put_i32(1000);
    body.put_i32(1);
    body.put_i16(1);
    body.put_u8(b't');
    body.put_i32(0x7fff_ffff);
    let reason = refused::<ProduceRequest>(ApiKey::Produce, 3, &body);
    assert!(reason.contains("collection of size 2147483647"), "{reason}");

    // CreateTopics v5 (flexible): one topic "t", 1 partition, replication 1, then its
    // assignments compact array with a huge count.
    let mut body = BytesMut::new();
    body.put_u8(2); // topics: 1 element
    body.put_u8(2); // name: 1 byte
    body.put_u8(b't');
    body.put_i32(1);
    body.put_i16(1);
    body.put_slice(&HUGE_UNSIGNED_VARINT);
    let reason = refused::<CreateTopicsRequest>(ApiKey::CreateTopics, 5, &body);
    assert!(reason.contains("collection of size 4294967294"), "{reason}");

    // Fetch v4: replica id, max wait, min bytes, max bytes, isolation, then topics with a
    // huge count.
    let mut body = BytesMut::new();
    body.put_i32(-1);
    body.put_i32(500);
    body.put_i32(1);
    body.put_i32(1 << 20);
    body.put_i8(0);
    body.put_i32(0x7fff_ffff);
    let reason = refused::<FetchRequest>(ApiKey::Fetch, 4, &body);
    assert!(reason.contains("collection of size 2147483647"), "{reason}");
}

#[test]
fn a_count_that_fits_the_bytes_left_still_decodes() {
    // One topic name per 3 bytes: the check refuses only what cannot be there.
    let mut body = BytesMut::new();
    body.put_i32(2);
    for name in ["a", "b"] {
        body.put_i16(1);
        body.put_slice(name.as_bytes());
    }
    let mut bytes = body.freeze();
    let request: MetadataRequest =
        decode_body(ApiKey::Metadata, 1, &mut bytes).expect("two topics decode");
    assert_eq!(request.topics.map(|topics| topics.len()), Some(2));
}

#[test]
fn a_short_buffer_is_an_error_for_the_request_header_helper() {
    let mut buf = Bytes::from_static(&[0]);
    assert!(decode_request_header_from_buffer(&mut buf).is_err());
    let mut buf = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 7, 0xff, 0xff]);
    let header: RequestHeader = decode_request_header_from_buffer(&mut buf).expect("header");
    assert_eq!(header.correlation_id, 7);
}

/// A record batch v2 with a correct CRC around `records` (the bytes after the header).
fn batch(attributes: i16, base_timestamp: i64, records_count: i32, records: &[u8]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i16(attributes);
    body.put_i32(records_count.max(1) - 1); // last offset delta
    body.put_i64(base_timestamp);
    body.put_i64(base_timestamp); // max timestamp
    body.put_i64(-1); // producer id
    body.put_i16(-1);
    body.put_i32(-1);
    body.put_i32(records_count);
    body.put_slice(records);
    let mut batch = BytesMut::new();
    batch.put_i64(0);
    batch.put_i32((4 + 1 + 4 + body.len()) as i32);
    batch.put_i32(0); // partition leader epoch
    batch.put_i8(2);
    batch.put_u32(crc32c::crc32c(&body));
    batch.put_slice(&body);
    batch.freeze()
}

/// One record: attributes, timestamp delta (zigzag varint), offset delta 0, null key, a 1-byte
/// value, then `headers` (the header count varint and any header bytes).
fn record(timestamp_delta_zigzag: &[u8], headers: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend_from_slice(timestamp_delta_zigzag);
    body.extend_from_slice(&[0, 1, 2, b'v']);
    body.extend_from_slice(headers);
    let mut record = vec![(body.len() as u8) << 1];
    record.extend_from_slice(&body);
    record
}

#[test]
fn a_huge_record_count_is_refused_before_allocating() {
    let records = record(&[0], &[0]);
    let mut buf = batch(0, 0, 0x7fff_ffff, &records);
    let error = RecordBatchDecoder::decode(&mut buf).expect_err("count lies");
    assert!(
        error.to_string().contains("Record count 2147483647"),
        "{error}"
    );
    // The honest count decodes.
    let mut buf = batch(0, 0, 1, &records);
    let set = RecordBatchDecoder::decode(&mut buf).expect("one record");
    assert_eq!(set.records.len(), 1);
}

#[test]
fn a_huge_record_header_count_is_refused_before_allocating() {
    // Header count varint zigzag(0x7fffffff) = 0xfffffffe: [fe ff ff ff 0f].
    let records = record(&[0], &[0xfe, 0xff, 0xff, 0xff, 0x0f]);
    let mut buf = batch(0, 0, 1, &records);
    let error = RecordBatchDecoder::decode(&mut buf).expect_err("count lies");
    assert!(
        error.to_string().contains("header count 2147483647"),
        "{error}"
    );
}

#[test]
fn timestamps_that_overflow_wrap_instead_of_panicking() {
    // Base timestamp i64::MAX and a delta of +1 (zigzag 2): Java's long arithmetic wraps; a
    // debug build of the unpatched decoder panicked on the overflow.
    let records = record(&[2], &[0]);
    let mut buf = batch(0, i64::MAX, 1, &records);
    let set = RecordBatchDecoder::decode(&mut buf).expect("decodes");
    assert_eq!(set.records[0].timestamp, i64::MIN);
}

#[test]
fn a_snappy_block_claiming_more_than_it_can_inflate_to_is_refused() {
    // Raw snappy: a preamble claiming u32::MAX bytes, then a few bytes.
    let mut raw = HUGE_UNSIGNED_VARINT.to_vec();
    raw.extend_from_slice(&[0; 8]);
    let mut buf = batch(2, 0, 1, &raw);
    let error = RecordBatchDecoder::decode(&mut buf).expect_err("claim lies");
    assert!(error.to_string().contains("claims 4294967295"), "{error}");
    // Kafka's framing (xerial): magic header, then one block whose preamble claims 4 GiB.
    // Unpatched, the decoder zero-filled the claimed size before decompressing.
    let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    framed.extend_from_slice(&(raw.len() as u32).to_be_bytes());
    framed.extend_from_slice(&raw);
    let mut buf = batch(2, 0, 1, &framed);
    let error = RecordBatchDecoder::decode(&mut buf).expect_err("claim lies");
    assert!(error.to_string().contains("claims 4294967295"), "{error}");
}
