//! Reading the metadata log (`__cluster_metadata-0`) without changing it, and telling the torn
//! tail of an unfinished write from damage.
//!
//! The controller appends one batch per change and fsyncs it before the change is answered or
//! acted on (topic directories are created only after their record is durable). So a crash can
//! leave exactly one unfinished write, at the end of the last segment, and nothing that was
//! acknowledged depends on it: the rule of [`runnel_log::strict_scan`], which this module
//! applies and whose module doc lists the torn tail's shapes and what is damage. Here a record
//! that does not decode as a [`MetadataRecord`], nor as a Raft entry of the metadata quorum's
//! log (whose records it then yields), is damage too. Truncating at damage would
//! silently drop acknowledged metadata (topics, deletions, producer id blocks), so the broker
//! must not start on it; `runnel metadata rebuild` ([`crate::metadata_rebuild`]) is the way out.

use std::path::Path;

use bytes::Bytes;
use runnel_log::strict_scan::{self, ScannedLog};
pub use runnel_log::strict_scan::{LogDamage as MetadataLogDamage, TornTail};
use runnel_metadata::MetadataRecord;
use runnel_protocol::record_batch::BatchHeader;
use runnel_protocol::records::RecordBatchDecoder;

/// The largest metadata batch written or read; the controller refuses larger records.
pub const METADATA_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;

/// What the metadata log holds.
#[derive(Debug, Default)]
pub struct MetadataLogScan {
    /// Whether `__cluster_metadata-0/` exists.
    pub exists: bool,
    /// Every record, with its offset, in log order.
    pub records: Vec<(i64, MetadataRecord)>,
    /// The offset after the last intact batch.
    pub end_offset: i64,
    pub torn_tail: Option<TornTail>,
}

/// Reads the whole metadata log in `dir`; damage (see the module doc) is an error.
pub fn scan(dir: &Path) -> Result<MetadataLogScan, MetadataLogDamage> {
    let (scan, damage) = salvage(dir);
    match damage {
        Some(damage) => Err(damage),
        None => Ok(scan),
    }
}

/// Reads the metadata log up to its damage, if any: the records before it, and the damage.
pub fn salvage(dir: &Path) -> (MetadataLogScan, Option<MetadataLogDamage>) {
    let mut records = Vec::new();
    let (scanned, damage) = strict_scan::salvage(dir, METADATA_BATCH_BYTES_MAX, |header, bytes| {
        decode_records(header, bytes, &mut records)
    });
    let ScannedLog {
        exists,
        end_offset,
        torn_tail,
    } = scanned;
    let scan = MetadataLogScan {
        exists,
        records,
        end_offset,
        torn_tail,
    };
    (scan, damage)
}

fn decode_records(
    header: &BatchHeader,
    bytes: Vec<u8>,
    records: &mut Vec<(i64, MetadataRecord)>,
) -> Result<(), MetadataLogDamage> {
    let undecodable = |offset, reason: String| MetadataLogDamage::Undecodable { offset, reason };
    let mut batch = Bytes::from(bytes);
    let set = RecordBatchDecoder::decode(&mut batch)
        .map_err(|error| undecodable(header.base_offset, error.to_string()))?;
    for record in set.records {
        let value = record.value.unwrap_or_default();
        match MetadataRecord::decode(&value) {
            Ok(decoded) => records.push((record.offset, decoded)),
            // The metadata quorum's log: one Raft entry per batch, its records inside.
            Err(error) => match runnel_controller::log_store::entry_records(&value) {
                Some(inside) => records.extend(inside.into_iter().map(|r| (record.offset, r))),
                None => return Err(undecodable(record.offset, error.to_string())),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The torn-tail and damage shapes are `runnel_log::strict_scan`'s tests; these pin what
    //! this module adds: records decoded in order, and a record that does not decode refused.
    use super::*;
    use runnel_protocol::record_batch;
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;

    /// A metadata log of `count` ProducerIds records, one batch each; returns its segment and
    /// each batch's start position.
    fn log_of(dir: &Path, count: i64) -> (PathBuf, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for offset in 0..count {
            let record = MetadataRecord::ProducerIds {
                next_producer_id: 1000 * (offset + 1),
            };
            let value = Some(Bytes::from(record.encode()));
            let mut batch = record_batch::encode_internal_batch([(None, value)], 1);
            record_batch::set_base_offset(&mut batch, offset);
            starts.push(bytes.len() as u64);
            bytes.extend_from_slice(&batch);
        }
        let path = dir.join("00000000000000000000.log");
        std::fs::write(&path, &bytes).expect("write segment");
        (path, starts)
    }

    #[test]
    fn an_intact_log_reads_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        log_of(dir.path(), 5);
        let scan = scan(dir.path()).expect("intact");
        let offsets: Vec<i64> = scan.records.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
        assert_eq!(
            scan.records[4].1,
            MetadataRecord::ProducerIds {
                next_producer_id: 5000
            }
        );
        assert_eq!(scan.end_offset, 5);
        assert_eq!(scan.torn_tail, None);
        assert!(!salvage(&dir.path().join("missing")).0.exists);
    }

    #[test]
    fn damage_is_refused_and_salvage_keeps_what_precedes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, starts) = log_of(dir.path(), 5);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.write_all_at(b"garbage garbage", starts[1] + 30)
            .expect("overwrite");
        assert!(scan(dir.path()).is_err());
        let (salvaged, damage) = salvage(dir.path());
        assert!(damage.is_some());
        assert_eq!(salvaged.records.len(), 1);
    }

    #[test]
    fn a_record_that_does_not_decode_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut batch =
            record_batch::encode_internal_batch([(None, Some(Bytes::from_static(b"{nope")))], 1);
        record_batch::set_base_offset(&mut batch, 0);
        std::fs::write(dir.path().join("00000000000000000000.log"), &batch).expect("write");
        assert!(matches!(
            scan(dir.path()),
            Err(MetadataLogDamage::Undecodable { offset: 0, .. })
        ));
    }
}
