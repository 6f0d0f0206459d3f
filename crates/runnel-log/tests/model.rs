//! Model-based test: a `PartitionLog` against a `Vec` of record values over random append /
//! roll / truncate / flush / close+reopen / crash (drop without close, then lose unsynced bytes
//! off the end of the active segment file).
//!
//! Invariant after every step: reading from the log start gives exactly the model. After a
//! crash the log keeps a prefix of the model that includes everything flushed, and the model
//! is cut to that prefix.

mod support;

use std::fs::OpenOptions;

use proptest::prelude::*;
use runnel_log::segment::segment_file_path;
use runnel_log::{LogConfig, PartitionLog};
use support::{batch, read_all};

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, value_bytes: usize },
    Roll,
    Truncate { fraction: f64 },
    Flush,
    Reopen,
    Crash { chop_fraction: f64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, 0usize..60).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        1 => Just(Op::Roll),
        1 => (0.0f64..1.0).prop_map(|fraction| Op::Truncate { fraction }),
        2 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => (0.0f64..1.0).prop_map(|chop_fraction| Op::Crash { chop_fraction }),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 50,
        ..LogConfig::default()
    }
}

fn check(log: &mut PartitionLog, model: &[String]) {
    assert_eq!(log.log_end_offset(), model.len() as i64);
    log.set_high_watermark(log.log_end_offset());
    let values: Vec<String> = read_all(log, log.high_watermark())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn partition_log_matches_a_vec_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model-0");
        let mut log = PartitionLog::open(&path, config(), 0).expect("open");
        let mut model: Vec<String> = Vec::new();
        let mut counter = 0usize;
        for op in ops {
            match op {
                Op::Append { records, value_bytes } => {
                    let tag = format!("v{counter}");
                    counter += 1;
                    let mut bytes = batch(records, &tag, value_bytes, 1_000 + counter as i64, None);
                    let expected: Vec<String> = support::decode(&bytes).into_iter().map(|(_, v)| v).collect();
                    let outcome = log.append(&mut bytes, 0, 0).expect("append");
                    prop_assert_eq!(outcome.base_offset, model.len() as i64);
                    model.extend(expected);
                }
                Op::Roll => log.roll().expect("roll"),
                Op::Truncate { fraction } => {
                    let target = (model.len() as f64 * fraction) as i64;
                    log.truncate_to(target).expect("truncate");
                    let end = log.log_end_offset();
                    prop_assert!(end <= target.max(0) || target >= model.len() as i64);
                    model.truncate(end as usize);
                }
                Op::Flush => {
                    if let Some(target) = log.flush_target() {
                        target.sync().expect("fsync");
                        log.mark_flushed(target.up_to);
                    }
                    prop_assert!(log.flush_target().is_none());
                }
                Op::Reopen => {
                    log.close().expect("close");
                    log = PartitionLog::open(&path, config(), model.len() as i64).expect("reopen");
                }
                Op::Crash { chop_fraction } => {
                    let recovery_point = log.recovery_point();
                    let end = log.log_end_offset();
                    let base = *log.segment_base_offsets().last().expect("segment");
                    let file = segment_file_path(&path, base, ".log");
                    let file_len = std::fs::metadata(&file).expect("stat").len();
                    let durable_len = if recovery_point <= base {
                        0
                    } else if recovery_point >= end {
                        file_len
                    } else {
                        log.read(recovery_point, 1, end, true).expect("read").position
                    };
                    drop(log);
                    let chop = ((file_len - durable_len) as f64 * chop_fraction) as u64;
                    OpenOptions::new().write(true).open(&file).and_then(|f| f.set_len(file_len - chop)).expect("chop");
                    log = PartitionLog::open(&path, config(), recovery_point).expect("recover");
                    let recovered = log.log_end_offset();
                    prop_assert!(recovered >= recovery_point, "lost flushed data: {} < {}", recovered, recovery_point);
                    prop_assert!(recovered <= model.len() as i64);
                    model.truncate(recovered as usize);
                }
            }
            check(&mut log, &model);
        }
    }
}
