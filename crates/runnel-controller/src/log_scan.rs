//! Reading the Raft log (`__cluster_metadata-0`) before it is opened, without changing it, and
//! telling the torn tail of an unfinished write from damage.
//!
//! Appends are fsync'd before openraft is told they are flushed, and only then may a vote or
//! an append response count them. So a crash can leave unfinished writes only after the last
//! flushed entry, at the end of the last segment: the rule of [`runnel_log::strict_scan`]
//! (its module doc lists the torn tail's shapes and what is damage), applied to Raft entries.
//! Each batch must hold exactly one record, a Raft entry whose index and term match the
//! batch's base offset and leader epoch ([`crate::log_store`] has the format); anything else is
//! damage too. Truncating at damage would drop entries this node reported flushed (votes and
//! commits were counted on them), so the node must not start on it: the error names the file
//! and byte.

use std::path::Path;

use runnel_log::strict_scan::{self, ScannedLog};
pub use runnel_log::strict_scan::{LogDamage as MetadataLogDamage, TornTail};

use crate::log_store::{decode_entry, METADATA_BATCH_BYTES_MAX};
use crate::types::LogId;

/// What the metadata log holds.
#[derive(Debug, Default)]
pub struct MetadataLogScan {
    /// The log id of the last intact entry.
    pub last_log_id: Option<LogId>,
    /// The offset after the last intact batch.
    pub end_offset: i64,
    pub torn_tail: Option<TornTail>,
}

/// Reads the whole Raft log in `dir`; damage (see the module doc) is an error.
pub fn scan(dir: &Path) -> Result<MetadataLogScan, MetadataLogDamage> {
    let mut last_log_id = None;
    let ScannedLog {
        end_offset,
        torn_tail,
        ..
    } = strict_scan::scan(dir, METADATA_BATCH_BYTES_MAX, |header, bytes| {
        let entry =
            decode_entry(header, bytes).map_err(|reason| MetadataLogDamage::Undecodable {
                offset: header.base_offset,
                reason,
            })?;
        last_log_id = Some(entry.log_id);
        Ok(())
    })?;
    Ok(MetadataLogScan {
        last_log_id,
        end_offset,
        torn_tail,
    })
}
