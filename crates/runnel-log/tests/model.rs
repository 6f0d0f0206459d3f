//! Model-based test: a `PartitionLog` against a model of its records (offset, key, value) over
//! random append / roll / truncate / flush / close+reopen / crash (drop without close, then
//! lose unsynced bytes off the end of the active segment file) / compaction / retention, and
//! compaction passes whose plan and apply steps have appends, a roll and retention between
//! them (as the broker runs a pass's middle step without the partition's lock).
//!
//! Invariant after every step: reading from the log start gives exactly the model. After a
//! crash the log keeps a prefix of the model that includes everything flushed, and the model
//! is cut to that prefix. A compaction that reports cleaner offset `c` leaves, below `c`, only
//! the latest record of each key (and every null-key record), and everything from `c` on; the
//! model applies the same rule. Retention drops the records below the new log start offset.
//! The cleaner offset survives reopen and crash as the broker's checkpoint would carry it.

mod support;

use std::collections::HashMap;
use std::fs::OpenOptions;

use proptest::prelude::*;
use runnel_log::segment::segment_file_path;
use runnel_log::{CompactionPolicy, LogConfig, PartitionLog, RetentionPolicy};
use support::{decode_keyed, keyed_batch};

#[derive(Debug, Clone)]
enum Op {
    Append {
        keys: Vec<Option<u8>>,
        value_bytes: usize,
    },
    Roll,
    Truncate {
        fraction: f64,
    },
    Flush,
    Reopen,
    Crash {
        chop_fraction: f64,
    },
    Compact {
        map_keys: usize,
    },
    Retain {
        keep_fraction: f64,
    },
    /// Plan a pass, then append these batches, roll, retain, then run and apply it.
    CompactMeanwhile {
        map_keys: usize,
        batches: Vec<Vec<Option<u8>>>,
        keep_fraction: f64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (proptest::collection::vec(proptest::option::weighted(0.8, 0u8..6), 1..5), 0usize..60)
            .prop_map(|(keys, value_bytes)| Op::Append { keys, value_bytes }),
        1 => Just(Op::Roll),
        1 => (0.0f64..1.0).prop_map(|fraction| Op::Truncate { fraction }),
        2 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => (0.0f64..1.0).prop_map(|chop_fraction| Op::Crash { chop_fraction }),
        2 => (1usize..8).prop_map(|map_keys| Op::Compact { map_keys }),
        1 => (0.3f64..1.0).prop_map(|keep_fraction| Op::Retain { keep_fraction }),
        2 => (
            1usize..8,
            proptest::collection::vec(
                proptest::collection::vec(proptest::option::weighted(0.8, 0u8..6), 1..5),
                0..4,
            ),
            0.3f64..1.0,
        )
            .prop_map(|(map_keys, batches, keep_fraction)| Op::CompactMeanwhile {
                map_keys,
                batches,
                keep_fraction,
            }),
    ]
}

fn config(direct_appends: bool) -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 50,
        // Compaction passes run here: gaps between segments are the cleaner's.
        compacted: true,
        direct_appends,
        ..LogConfig::default()
    }
}

/// What the log should hold: its records in offset order, its log end offset and the offset
/// below which it is compacted.
#[derive(Debug, Default)]
struct Model {
    records: Vec<(i64, Option<String>, String)>,
    end: i64,
    cleaned: i64,
}

impl Model {
    fn keep_below(&mut self, end: i64) {
        self.records.retain(|r| r.0 < end);
        self.end = end;
        self.cleaned = self.cleaned.min(end);
    }

    fn compact_below(&mut self, cleaned: i64) {
        let mut latest: HashMap<String, i64> = HashMap::new();
        for (offset, key, _) in self.records.iter().filter(|r| r.0 < cleaned) {
            if let Some(key) = key {
                latest.insert(key.clone(), *offset);
            }
        }
        self.records.retain(|(offset, key, _)| {
            *offset >= cleaned || key.as_ref().is_none_or(|k| latest.get(k) == Some(offset))
        });
        self.cleaned = self.cleaned.max(cleaned);
    }
}

/// Appends one batch of `keys` to the log and the model.
fn append(
    log: &mut PartitionLog,
    model: &mut Model,
    keys: &[Option<u8>],
    value_bytes: usize,
    counter: &mut usize,
) {
    let tag = format!("v{counter}");
    *counter += 1;
    let keys: Vec<Option<String>> = keys.iter().map(|k| k.map(|k| format!("k{k}"))).collect();
    let mut bytes = keyed_batch(&keys, &tag, value_bytes, 1_000 + *counter as i64);
    let expected = decode_keyed(&bytes);
    let outcome = log.append(&mut bytes, 0, 0).expect("append");
    assert_eq!(outcome.base_offset, model.end);
    model.records.extend(
        expected
            .into_iter()
            .map(|(o, k, v)| (o + outcome.base_offset, k, v)),
    );
    model.end = outcome.last_offset + 1;
}

/// Retention keeping about `keep_fraction` of the log's bytes, in the log and the model.
fn retain(log: &mut PartitionLog, model: &mut Model, keep_fraction: f64) {
    let policy = RetentionPolicy {
        retention_ms: -1,
        retention_bytes: (log.size_bytes() as f64 * keep_fraction) as i64,
    };
    log.apply_retention(&policy, 1_000_000).expect("retention");
    let start = log.log_start_offset();
    model.records.retain(|r| r.0 >= start);
}

fn compaction_policy() -> CompactionPolicy {
    CompactionPolicy {
        delete_retention_ms: i64::MAX,
        min_cleanable_dirty_ratio: 0.0,
        ..CompactionPolicy::default()
    }
}

fn map_bytes(map_keys: usize) -> usize {
    map_keys * (runnel_log::partition_log::OFFSET_MAP_ENTRY_OVERHEAD_BYTES + 2)
}

fn read_all(log: &PartitionLog) -> Vec<(i64, Option<String>, String)> {
    let mut offset = log.log_start_offset();
    let mut out = Vec::new();
    loop {
        let slice = log
            .read(offset, 1 << 20, log.high_watermark(), true)
            .expect("read");
        if slice.is_empty() {
            return out;
        }
        out.extend(decode_keyed(&slice.read_bytes().expect("pread")));
        assert!(slice.next_offset > offset, "reads make progress");
        offset = slice.next_offset;
    }
}

/// Compares the log with the model. Reads serve what the file holds: with `write_out` a
/// direct tail goes to the file first and the whole log must match; without, what is read must
/// be a prefix of the model (the rest waits in the tail, as it does between two flushes).
fn check(log: &mut PartitionLog, model: &Model, write_out: bool) {
    assert_eq!(log.log_end_offset(), model.end);
    if write_out {
        log.write_out_appends().expect("write out");
    }
    log.set_high_watermark(log.log_end_offset());
    let read = read_all(log);
    if write_out {
        assert_eq!(read, model.records);
    } else {
        assert_eq!(read[..], model.records[..read.len()]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn partition_log_matches_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(ops, false)?;
    }

    /// The same with direct appends (`direct_io.rs`): a crash loses the tail not yet written
    /// out, never what a flush made durable, and the zero padding of direct writes is no
    /// damage.
    #[test]
    fn partition_log_with_direct_appends_matches_a_model(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run_model(ops, true)?;
    }
}

fn run_model(ops: Vec<Op>, direct: bool) -> Result<(), TestCaseError> {
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model-0");
        let mut log = PartitionLog::open(&path, config(direct), 0).expect("open");
        let mut model = Model::default();
        let mut counter = 0usize;
        for op in ops {
            // After appends the tail may keep them (direct mode); every other op writes out.
            let write_out = !direct || !matches!(op, Op::Append { .. });
            match op {
                Op::Append { keys, value_bytes } => {
                    append(&mut log, &mut model, &keys, value_bytes, &mut counter);
                }
                Op::Roll => log.roll().expect("roll"),
                Op::Truncate { fraction } => {
                    let target = (model.end as f64 * fraction) as i64;
                    log.truncate_to(target).expect("truncate");
                    let end = log.log_end_offset();
                    prop_assert!(end <= target.max(0) || target >= model.end);
                    model.keep_below(end);
                }
                Op::Flush => {
                    if let Some(target) = log.prepare_flush().expect("write out") {
                        target.sync().expect("fsync");
                        log.mark_flushed(target.up_to);
                    }
                    prop_assert!(log.flush_target().is_none());
                }
                Op::Reopen => {
                    log.close().expect("close");
                    log = PartitionLog::open(&path, config(direct), model.end).expect("reopen");
                    log.set_cleaner_offset(model.cleaned);
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
                        log.read(recovery_point, 1, end, true)
                            .expect("read")
                            .position
                    };
                    drop(log);
                    let chop = ((file_len - durable_len) as f64 * chop_fraction) as u64;
                    OpenOptions::new()
                        .write(true)
                        .open(&file)
                        .and_then(|f| f.set_len(file_len - chop))
                        .expect("chop");
                    log =
                        PartitionLog::open(&path, config(direct), recovery_point).expect("recover");
                    log.set_cleaner_offset(model.cleaned);
                    let recovered = log.log_end_offset();
                    prop_assert!(
                        recovered >= recovery_point,
                        "lost flushed data: {} < {}",
                        recovered,
                        recovery_point
                    );
                    prop_assert!(recovered <= model.end);
                    model.keep_below(recovered);
                }
                Op::Compact { map_keys } => {
                    let before = log.cleaner_offset();
                    let outcome = log
                        .compact(&compaction_policy(), 1_000_000, map_bytes(map_keys))
                        .expect("compact");
                    prop_assert!(outcome.cleaner_offset >= before);
                    prop_assert_eq!(outcome.cleaner_offset, log.cleaner_offset());
                    model.compact_below(outcome.cleaner_offset);
                }
                Op::Retain { keep_fraction } => retain(&mut log, &mut model, keep_fraction),
                Op::CompactMeanwhile {
                    map_keys,
                    batches,
                    keep_fraction,
                } => {
                    log.set_high_watermark(log.log_end_offset());
                    let plan = log
                        .plan_compaction(&compaction_policy(), 1_000_000, map_bytes(map_keys))
                        .expect("plan");
                    for keys in &batches {
                        append(&mut log, &mut model, keys, 10, &mut counter);
                    }
                    log.roll().expect("roll");
                    retain(&mut log, &mut model, keep_fraction);
                    if let Some(plan) = plan {
                        let outcome = log
                            .apply_compaction(plan.run().expect("run"))
                            .expect("apply");
                        prop_assert_eq!(outcome.cleaner_offset, log.cleaner_offset());
                        model.compact_below(outcome.cleaner_offset);
                    }
                }
            }
            check(&mut log, &model, write_out);
        }
    }
    Ok(())
}
