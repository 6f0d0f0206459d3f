//! Data directories written by earlier builds open with this one, their data intact.
//!
//! `tests/fixtures/data-dir-before-single-term-leaders.tar.gz` was written by the build of
//! commit ad33cf8, the last before `runnel-controller` turned on openraft's
//! `single-term-leader`: `runnel server --data-dir data` (a quorum of one), 10 records produced
//! by kcat to `before-upgrade` (auto-created), SIGTERM; started again, 10 more records, SIGTERM.
//! Its metadata log, `quorum-state` vote and committed log id are in the old JSON forms
//! (`{"leader_id": {"term", "node_id"}, ...}`), which this build reads as
//! `runnel_controller`'s `openraft_json` says. Without that rewrite the node refuses to
//! start ("body does not decode").

mod common;

use std::process::Command;

use common::{create_topic, fetch_all, RawClient, TestBroker};
use runnel_controller::quorum_state::QuorumState;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/data-dir-before-single-term-leaders.tar.gz"
);

/// The fixture unpacked into a fresh temporary directory: its `data/` is the data dir.
fn unpack() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new("tar")
        .arg("xzf")
        .arg(FIXTURE)
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar xzf {FIXTURE}: {status}");
    let data = tempfile::tempdir().expect("temp dir");
    std::fs::remove_dir(data.path()).expect("empty temp dir");
    std::fs::rename(dir.path().join("data"), data.path()).expect("move the data dir");
    data
}

#[test]
fn a_data_dir_from_before_single_term_leaders_keeps_its_metadata_vote_and_records() {
    let data = unpack();
    let quorum_dir = data.path().join("__cluster_metadata-0");
    let before = QuorumState::read(&quorum_dir).expect("the old quorum-state reads");
    let old_vote = before.vote.expect("the fixture's node voted");
    assert_eq!(old_vote.leader_id().voted_for(), Some(1), "{old_vote}");
    assert!(old_vote.is_committed());

    let mut broker = TestBroker::start_in(data, &[]);
    let mut client = RawClient::connect(broker.addr);
    let (error, high_watermark, records) = fetch_all(&mut client, "before-upgrade");
    assert_eq!(error, 0);
    assert_eq!(
        high_watermark, 20,
        "every record the old build acknowledged"
    );
    assert!(!records.is_empty());

    // New entries follow the old ones in the same log, and the mixed log reopens.
    assert_eq!(create_topic(&mut client, "after-upgrade", 2, &[]), 0);
    drop(client);
    broker.restart(&[]);
    let mut client = RawClient::connect(broker.addr);
    let (error, high_watermark, _) = fetch_all(&mut client, "before-upgrade");
    assert_eq!((error, high_watermark), (0, 20));
    let (error, _, _) = fetch_all(&mut client, "after-upgrade");
    assert_eq!(error, 0, "the topic created on this build is still there");
    drop(client);
    broker.stop();

    // The vote only moved forward: same node, a term at least the old one's.
    let after = QuorumState::read(&broker.data_dir().join("__cluster_metadata-0"))
        .expect("quorum-state reads");
    let vote = after.vote.expect("a vote");
    assert_eq!(vote.leader_id().voted_for(), Some(1), "{vote}");
    assert!(vote.leader_id().get_term() >= old_vote.leader_id().get_term());
    assert!(after.committed > before.committed);
}
