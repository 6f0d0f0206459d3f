//! Record validation against batches built byte by byte, in every codec.

use std::io::Write;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;
use crate::record_batch::validate_batch;

const BOUND: usize = 1 << 20;
const CODECS: [i16; 5] = [0, 1, 2, 3, 4];

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// One record's body (everything after its length).
fn record_body(
    offset_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    put_varint(&mut body, 3); // timestamp delta
    put_varint(&mut body, offset_delta);
    for field in [key, value] {
        match field {
            None => put_varint(&mut body, -1),
            Some(bytes) => {
                put_varint(&mut body, bytes.len() as i64);
                body.extend_from_slice(bytes);
            }
        }
    }
    put_varint(&mut body, headers.len() as i64);
    for (key, value) in headers {
        put_varint(&mut body, key.len() as i64);
        body.extend_from_slice(key);
        match value {
            None => put_varint(&mut body, -1),
            Some(bytes) => {
                put_varint(&mut body, bytes.len() as i64);
                body.extend_from_slice(bytes);
            }
        }
    }
    body
}

fn with_length(body: &[u8]) -> Vec<u8> {
    let mut record = Vec::new();
    put_varint(&mut record, body.len() as i64);
    record.extend_from_slice(body);
    record
}

/// `count` well-formed keyed records.
fn records(count: i64) -> Vec<u8> {
    (0..count)
        .flat_map(|i| with_length(&record_body(i, Some(b"key"), Some(b"value"), &[])))
        .collect()
}

fn compress(codec: i16, bytes: &[u8]) -> Vec<u8> {
    match codec {
        0 => bytes.to_vec(),
        1 => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
        2 => {
            // Xerial framing, two blocks when there is enough to split.
            let mut out = codecs_xerial_header();
            let (first, second) = bytes.split_at(bytes.len() / 2);
            for block in [first, second] {
                let compressed = snap::raw::Encoder::new().compress_vec(block).unwrap();
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            out
        }
        3 => {
            let mut encoder = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            encoder.write_all(bytes).unwrap();
            let (out, finished) = encoder.finish();
            finished.unwrap();
            out
        }
        4 => zstd::encode_all(bytes, 3).unwrap(),
        other => panic!("codec {other}"),
    }
}

fn codecs_xerial_header() -> Vec<u8> {
    b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec()
}

/// A whole batch with a correct CRC around `payload` (already compressed with `codec`).
fn batch_of(payload: &[u8], count: i32, codec: i16) -> Vec<u8> {
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&[0; 4]); // crc
    batch.extend_from_slice(&codec.to_be_bytes());
    batch.extend_from_slice(&(count - 1).to_be_bytes());
    batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    batch.extend_from_slice(&1_700_000_000_003i64.to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes());
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(payload);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// A compacted topic's policy: records need keys; timestamps are not checked.
const KEYS_REQUIRED: RecordPolicy = RecordPolicy {
    key_required: true,
    create_time: None,
};

fn check(batch: &[u8]) -> Result<CheckedRecords, RecordValidationError> {
    let header = validate_batch(batch).expect("a valid header and CRC");
    validate_records(batch, &header, &KEYS_REQUIRED, BOUND)
}

/// The indexes of the records refused for having no key.
fn keyless(checked: &CheckedRecords) -> Vec<i32> {
    checked
        .faults
        .iter()
        .filter(|fault| fault.kind == RecordFaultKind::KeyMissing)
        .map(|fault| fault.index)
        .collect()
}

fn check_records(records: &[u8], count: i32) -> Result<CheckedRecords, RecordValidationError> {
    check(&batch_of(records, count, 0))
}

fn invalid_record(result: Result<CheckedRecords, RecordValidationError>) -> i32 {
    match result {
        Err(RecordValidationError::InvalidRecord { index, .. }) => index,
        other => panic!("expected an invalid record, got {other:?}"),
    }
}

fn encoded_batch(compression: Compression) -> Vec<u8> {
    let records: Vec<Record> = (0..20)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 7,
            producer_epoch: 2,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: 40 + i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: (i % 5 != 3).then(|| Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i} ").repeat(50))),
            headers: [(
                kafka_protocol::protocol::StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"x")),
            )]
            .into_iter()
            .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.to_vec()
}

fn decoded(batch: &[u8]) -> Vec<Record> {
    RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(batch))
        .expect("decode")
        .records
}

const COMPRESSIONS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn encoder_batches_of_every_codec_pass_and_keyless_records_are_found() {
    for compression in COMPRESSIONS {
        let batch = encoded_batch(compression);
        let checked = check(&batch).unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        assert_eq!(keyless(&checked), [3, 8, 13, 18], "{compression:?}");
        assert!(checked.inflated_bytes > 20 * 400, "{compression:?}");
    }
}

#[test]
fn hand_built_batches_of_every_codec_pass_including_raw_snappy() {
    let headers: [Header; 3] = [(b"h", Some(b"1")), (b"h", Some(b"2")), (b"", None)];
    let body = |i| record_body(i, None, Some(b"v"), &headers);
    let plain: Vec<u8> = (0..4).flat_map(|i| with_length(&body(i))).collect();
    for codec in CODECS {
        let checked = check(&batch_of(&compress(codec, &plain), 4, codec)).expect("valid");
        assert_eq!(keyless(&checked), [0, 1, 2, 3]);
        assert_eq!(checked.inflated_bytes, plain.len());
    }
    let raw = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
    check(&batch_of(&raw, 4, 2)).expect("raw snappy");
    // Null keys and values, empty ones, large ones.
    let big = vec![7u8; 100_000];
    let mixed: Vec<u8> = [
        record_body(0, None, None, &[]),
        record_body(1, Some(b""), Some(b""), &[]),
        record_body(2, Some(&big), Some(&big), &[(&big, Some(&big))]),
    ]
    .iter()
    .flat_map(|body| with_length(body))
    .collect();
    for codec in CODECS {
        check(&batch_of(&compress(codec, &mixed), 3, codec)).expect("valid");
    }
}

#[test]
fn garbage_records_are_invalid_record() {
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
    for codec in CODECS {
        let result = check(&batch_of(&compress(codec, &garbage), 3, codec));
        assert_eq!(
            result.map_err(|e| e.error_code()),
            Err(ErrorCode::InvalidRecord),
            "codec {codec}"
        );
    }
}

#[test]
fn a_records_count_that_lies_is_invalid_record() {
    // More declared than present: Kafka's "premature EOF".
    assert_eq!(
        check_records(&records(3), 4),
        Err(RecordValidationError::TooFewRecords {
            declared: 4,
            found: 3
        })
    );
    // Fewer declared than present: Kafka's "records still remaining".
    assert_eq!(
        check_records(&records(3), 2),
        Err(RecordValidationError::TrailingBytes { declared: 2 })
    );
    // One stray byte after the last record, in every codec.
    let mut trailing = records(2);
    trailing.push(0);
    for codec in CODECS {
        assert_eq!(
            check(&batch_of(&compress(codec, &trailing), 2, codec)),
            Err(RecordValidationError::TrailingBytes { declared: 2 }),
            "codec {codec}"
        );
    }
    for codec in CODECS {
        let result = check(&batch_of(&compress(codec, &records(3)), 5, codec));
        assert_eq!(result.map_err(|e| e.record_index()), Err(Some(3)));
    }
}

#[test]
fn a_record_length_that_lies_is_invalid_record() {
    let body = record_body(0, Some(b"k"), Some(b"v"), &[]);
    // Longer than the fields, with bytes to spare after it: the fields end early.
    let mut longer = Vec::new();
    put_varint(&mut longer, body.len() as i64 + 2);
    longer.extend_from_slice(&body);
    longer.extend_from_slice(&with_length(&record_body(1, Some(b"k"), None, &[])));
    assert_eq!(invalid_record(check_records(&longer, 2)), 0);
    // Longer than the bytes left.
    let mut past_end = Vec::new();
    put_varint(&mut past_end, 1_000_000);
    past_end.extend_from_slice(&body);
    assert_eq!(invalid_record(check_records(&past_end, 1)), 0);
    // Shorter than the fields.
    let mut shorter = Vec::new();
    put_varint(&mut shorter, body.len() as i64 - 1);
    shorter.extend_from_slice(&body);
    assert_eq!(invalid_record(check_records(&shorter, 1)), 0);
    // Negative, and zero.
    for length in [-1, 0] {
        let mut bad = Vec::new();
        put_varint(&mut bad, length);
        bad.extend_from_slice(&body);
        assert_eq!(invalid_record(check_records(&bad, 1)), 0);
    }
    // A second record whose key length runs past it.
    let mut key_past = records(1);
    let mut body = vec![0u8, 0, 2];
    put_varint(&mut body, 50);
    key_past.extend_from_slice(&with_length(&body));
    assert_eq!(invalid_record(check_records(&key_past, 2)), 1);
}

#[test]
fn offset_deltas_other_than_the_index_are_invalid_record() {
    for deltas in [[0, 0, 1], [1, 2, 3], [0, 2, 1], [0, 1, -1]] {
        let bad: Vec<u8> = deltas
            .iter()
            .flat_map(|&delta| with_length(&record_body(delta, Some(b"k"), None, &[])))
            .collect();
        let first_bad = deltas.iter().zip(0..).position(|(&d, i)| d != i).unwrap();
        for codec in CODECS {
            let result = check(&batch_of(&compress(codec, &bad), 3, codec));
            assert_eq!(invalid_record(result), first_bad as i32, "{deltas:?}");
        }
    }
}

#[test]
fn header_counts_and_lengths_that_lie_are_invalid_record() {
    let one: [Header; 1] = [(b"key", Some(b"value"))];
    let good = record_body(0, Some(b"k"), None, &one);
    // The headers count is the last varint before the one header: patch it.
    let count_at = good.len() - (1 + 3 + 1 + 5) - 1;
    assert_eq!(good[count_at], 2); // zigzag 1
    for count in [-1i64, 2, 1_000_000] {
        let mut body = good[..count_at].to_vec();
        put_varint(&mut body, count);
        body.extend_from_slice(&good[count_at + 1..]);
        assert_eq!(
            invalid_record(check_records(&with_length(&body), 1)),
            0,
            "count {count}"
        );
    }
    // A negative header key length; a header value length below -1.
    let bad_key: [Header; 1] = [(b"", Some(b"v"))];
    let mut body = record_body(0, None, None, &bad_key);
    let key_length_at = body.len() - 3;
    assert_eq!(body[key_length_at], 0);
    body[key_length_at] = 1; // zigzag -1
    assert_eq!(invalid_record(check_records(&with_length(&body), 1)), 0);
    let mut body = record_body(0, None, None, &[(b"k", None)]);
    let last = body.len() - 1;
    body[last] = 3; // zigzag -2
    assert_eq!(invalid_record(check_records(&with_length(&body), 1)), 0);
}

#[test]
fn over_long_varints_and_lengths_below_minus_one_are_invalid_record() {
    let mut body = vec![0u8];
    body.extend_from_slice(&[0xff; 10]); // an 11-byte varlong
    body.push(0);
    assert_eq!(invalid_record(check_records(&with_length(&body), 1)), 0);
    let mut six_byte_length = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    six_byte_length.extend_from_slice(&record_body(0, None, None, &[]));
    assert_eq!(invalid_record(check_records(&six_byte_length, 1)), 0);
    let mut body = vec![0u8, 0, 0];
    put_varint(&mut body, -2); // key length
    put_varint(&mut body, -1);
    put_varint(&mut body, 0);
    assert_eq!(invalid_record(check_records(&with_length(&body), 1)), 0);
}

#[test]
fn payloads_that_do_not_decompress_are_corrupt_message() {
    let plain = records(50);
    for codec in [1i16, 2, 3, 4] {
        let good = compress(codec, &plain);
        let garbage: Vec<u8> = (0..300u32).map(|i| (i * 89 % 253) as u8 ^ 0x5a).collect();
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 3);
        let mut followed = good.clone();
        followed.extend_from_slice(b"\x01\x02\x03\x04\x05\x06\x07\x08");
        let mut flipped = good.clone();
        let middle = good.len() / 2;
        flipped[middle] ^= 0x10;
        for (what, payload) in [
            ("garbage", garbage),
            ("truncated", truncated),
            ("followed by bytes", followed),
            ("a flipped byte", flipped),
            ("empty", Vec::new()),
        ] {
            let result = check(&batch_of(&payload, 50, codec));
            let code = result.as_ref().map_err(|e| e.error_code());
            // A flipped byte may still inflate: its records are then refused instead, or, in a
            // snappy literal (snappy blocks carry no checksum), it is just another value.
            assert!(
                matches!(code, Err(ErrorCode::CorruptMessage))
                    || (what == "a flipped byte" && matches!(code, Err(ErrorCode::InvalidRecord)))
                    || (what == "a flipped byte" && codec == 2)
                    || (what == "empty"
                        && codec == 2
                        && matches!(code, Err(ErrorCode::InvalidRecord))),
                "codec {codec}, {what}: {result:?}"
            );
        }
    }
}

#[test]
fn inflating_past_the_bound_is_message_too_large_for_every_codec() {
    // One record whose value is 4 MiB of zeros: each codec shrinks it to a few KiB.
    let value = vec![0u8; 4 << 20];
    let plain = with_length(&record_body(0, None, Some(&value), &[]));
    for codec in [1i16, 2, 3, 4] {
        let payload = compress(codec, &plain);
        assert!(
            payload.len() < 400 << 10,
            "codec {codec}: {}",
            payload.len()
        );
        let batch = batch_of(&payload, 1, codec);
        let header = validate_batch(&batch).unwrap();
        assert_eq!(
            validate_records(&batch, &header, &KEYS_REQUIRED, BOUND),
            Err(RecordValidationError::InflatedTooLarge { bytes_max: BOUND }),
            "codec {codec}"
        );
        validate_records(&batch, &header, &KEYS_REQUIRED, 8 << 20).expect("under a larger bound");
    }
    // Raw snappy declares its size up front: refused before anything is allocated.
    let raw = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
    let batch = batch_of(&raw, 1, 2);
    let header = validate_batch(&batch).unwrap();
    assert_eq!(
        validate_records(&batch, &header, &KEYS_REQUIRED, BOUND),
        Err(RecordValidationError::InflatedTooLarge { bytes_max: BOUND })
    );
    // A raw snappy block declaring more than snappy can inflate from its size.
    let mut lying = Vec::new();
    put_varint_unsigned(&mut lying, 50_000);
    lying.extend_from_slice(&[0u8; 10]);
    let batch = batch_of(&lying, 1, 2);
    assert_eq!(
        check(&batch).map_err(|e| e.error_code()),
        Err(ErrorCode::CorruptMessage)
    );
}

fn put_varint_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[test]
fn recompressing_keeps_records_and_header_fields_in_every_codec_pair() {
    for from in COMPRESSIONS {
        let original = encoded_batch(from);
        let header = validate_batch(&original).expect("valid");
        for to in COMPRESSIONS {
            let (checked, recompressed) =
                validate_and_recompress(&original, &header, &KEYS_REQUIRED, to, BOUND, BOUND)
                    .unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e}"));
            assert_eq!(keyless(&checked), [3, 8, 13, 18]);
            let new_header = validate_batch(&recompressed).expect("valid, CRC included");
            assert_eq!(new_header.compression(), crate::reencode::codec_of(to));
            assert_eq!(
                (new_header.attributes & !7, new_header.records_count),
                (header.attributes & !7, header.records_count)
            );
            assert_eq!(
                (
                    new_header.producer_id,
                    new_header.producer_epoch,
                    new_header.base_sequence
                ),
                (7, 2, 40)
            );
            assert_eq!(
                (new_header.base_timestamp, new_header.max_timestamp),
                (header.base_timestamp, header.max_timestamp)
            );
            assert_eq!(
                decoded(&recompressed),
                decoded(&original),
                "{from:?} -> {to:?}"
            );
            validate_records(&recompressed, &new_header, &KEYS_REQUIRED, BOUND)
                .expect("still valid");
        }
    }
}

#[test]
fn recompression_is_refused_past_max_message_bytes_and_keeps_checking_records() {
    let original = encoded_batch(Compression::Zstd);
    let header = validate_batch(&original).unwrap();
    assert_eq!(
        validate_and_recompress(
            &original,
            &header,
            &KEYS_REQUIRED,
            Compression::None,
            BOUND,
            4096
        ),
        Err(RecordValidationError::RecompressedTooLarge { bytes_max: 4096 })
    );
    let bad = batch_of(&compress(4, &records(3)), 4, 4);
    let header = validate_batch(&bad).unwrap();
    assert_eq!(
        validate_and_recompress(
            &bad,
            &header,
            &KEYS_REQUIRED,
            Compression::Gzip,
            BOUND,
            BOUND
        ),
        Err(RecordValidationError::TooFewRecords {
            declared: 4,
            found: 3
        })
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_records_never_panic(
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        count in 1..20i32,
        codec in 0..5i16,
    ) {
        let batch = batch_of(&payload, count, codec);
        let _ = check(&batch);
        let compressed = batch_of(&compress(codec, &payload), count, codec);
        let _ = check(&compressed);
        let header = validate_batch(&compressed).unwrap();
        let _ = validate_and_recompress(&compressed, &header, &KEYS_REQUIRED, Compression::Lz4, BOUND, BOUND);
    }
}

/// Pins Kafka's `LogValidator.validateTimestamp`: a record is refused when `now - timestamp`
/// exceeds `message.timestamp.before.max.ms` or `timestamp - now` exceeds
/// `message.timestamp.after.max.ms`; a key is checked first, one fault per record.
#[test]
fn timestamps_outside_the_bounds_are_faults_of_their_records_in_every_codec() {
    // Records 0..20 are stamped 1_700_000_000_000 + i; records 3, 8, 13, 18 have no key.
    let bounds = TimestampBounds {
        now_ms: 1_700_000_000_010,
        before_max_ms: 5,
        after_max_ms: 3,
    };
    for compression in COMPRESSIONS {
        let batch = encoded_batch(compression);
        let header = validate_batch(&batch).expect("valid");
        let policy = RecordPolicy {
            key_required: false,
            create_time: Some(bounds),
        };
        let checked = validate_records(&batch, &header, &policy, BOUND).expect("well formed");
        let refused: Vec<(i32, i64)> = checked
            .faults
            .iter()
            .map(|fault| match fault.kind {
                RecordFaultKind::TimestampOutOfRange { timestamp } => (fault.index, timestamp),
                other => panic!("{compression:?}: unexpected {other:?}"),
            })
            .collect();
        let expected: Vec<(i32, i64)> = (0..=4)
            .chain(14..=19)
            .map(|i| (i, 1_700_000_000_000 + i64::from(i)))
            .collect();
        assert_eq!(refused, expected, "{compression:?}");

        let both = RecordPolicy {
            key_required: true,
            create_time: Some(bounds),
        };
        let checked = validate_records(&batch, &header, &both, BOUND).expect("well formed");
        let indexes: Vec<i32> = checked.faults.iter().map(|fault| fault.index).collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4, 8, 13, 14, 15, 16, 17, 18, 19]);
        assert_eq!(keyless(&checked), [3, 8, 13, 18]);
    }
}

#[test]
fn extreme_timestamps_and_bounds_do_not_overflow() {
    let unbounded = TimestampBounds {
        now_ms: 1_700_000_000_000,
        before_max_ms: i64::MAX,
        after_max_ms: i64::MAX,
    };
    assert!(!unbounded.refuses(i64::MIN));
    assert!(!unbounded.refuses(i64::MAX));
    let tight = TimestampBounds {
        before_max_ms: 0,
        after_max_ms: 0,
        ..unbounded
    };
    assert!(tight.refuses(i64::MIN) && tight.refuses(i64::MAX));
    assert!(!tight.refuses(1_700_000_000_000));
}
