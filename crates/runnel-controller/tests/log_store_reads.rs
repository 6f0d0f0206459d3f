//! Reads of the metadata log through openraft's reader, on a real log in a temporary dir.

use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{CommittedLeaderId, LogId};
use runnel_controller::LogStore;
use runnel_log::LogConfig;

/// A replication stream left over from an earlier leadership may ask for entries this node has
/// since purged: it must get none, not an error (openraft stops the node on a replication's
/// storage error). Found by `runnel-sim` (seed 13, 3 voters).
#[tokio::test]
async fn a_read_below_the_purged_log_gives_no_entries_not_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path(), LogConfig::default()).expect("open");
    // A snapshot up to index 9 installed on an empty log: the log now starts at 10.
    store
        .purge(LogId::new(CommittedLeaderId::new(2, 1), 9))
        .await
        .expect("purge");
    let state = store.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(9));
    for range in [5..12, 0..10, 9..10] {
        let entries = store
            .try_get_log_entries(range.clone())
            .await
            .unwrap_or_else(|error| panic!("reading {range:?}: {error}"));
        assert!(entries.is_empty(), "{range:?}: {entries:?}");
    }
    // Reopened, the log still starts past the purged point.
    drop(store);
    let mut store = LogStore::open(dir.path(), LogConfig::default()).expect("reopen");
    let entries = store.try_get_log_entries(3..20).await.expect("read");
    assert!(entries.is_empty());
}
