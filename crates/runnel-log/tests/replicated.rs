//! A follower's log built from its leader's batches (`append_replicated`): the same bytes,
//! the same leader epochs and producer state, and the refusals that protect it.

mod support;

use runnel_log::{AppendError, PartitionLog};
use runnel_protocol::record_batch::batches;
use support::{batch, small_config, Producer};

const NOW: i64 = 1_700_000_000_000;

/// Every batch of `log` from `offset` on, as stored.
fn stored_batches(log: &PartitionLog, offset: i64) -> Vec<Vec<u8>> {
    let end = log.log_end_offset();
    let mut out = Vec::new();
    let mut next = offset;
    while next < end {
        let slice = log.read(next, 1 << 20, end, true).expect("read");
        let bytes = slice.read_bytes().expect("read bytes");
        for batch in batches(&bytes) {
            let (_, range) = batch.expect("whole batch");
            out.push(bytes[range].to_vec());
        }
        next = slice.next_offset;
    }
    out
}

fn segment_bytes(log: &PartitionLog) -> Vec<u8> {
    stored_batches(log, log.log_start_offset()).concat()
}

#[test]
fn a_follower_holds_the_leaders_bytes_epochs_and_producer_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut leader =
        PartitionLog::open(&dir.path().join("leader"), small_config(800), 0).expect("open leader");
    let mut follower = PartitionLog::open(&dir.path().join("follower"), small_config(800), 0)
        .expect("open follower");
    let producer = |sequence| Producer {
        id: 7,
        epoch: 0,
        sequence,
    };
    for i in 0..10 {
        let epoch = if i < 5 { 0 } else { 3 };
        let mut bytes = batch(
            2,
            &format!("b{i}"),
            30,
            NOW + i,
            Some(producer(i as i32 * 2)),
        );
        leader
            .append(&mut bytes, epoch, NOW)
            .expect("leader append");
    }
    for stored in stored_batches(&leader, 0) {
        follower
            .append_replicated(&stored, NOW)
            .expect("follower append");
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(segment_bytes(&follower), segment_bytes(&leader));
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    assert_eq!(follower.leader_epochs(), &[(0, 0), (3, 10)]);
    assert!(
        follower.segment_count() > 1,
        "the follower rolls as it fills"
    );

    // Become leader: a retry of the producer's last batch is a duplicate here too.
    let mut retry = batch(2, "b9", 30, NOW + 9, Some(producer(18)));
    let outcome = follower
        .append(&mut retry, 4, NOW)
        .expect("append as leader");
    assert!(outcome.duplicate, "the follower kept the producer state");
    assert_eq!(outcome.base_offset, 18);
    let mut next = batch(2, "b10", 30, NOW + 10, Some(producer(20)));
    let outcome = follower
        .append(&mut next, 4, NOW)
        .expect("append as leader");
    assert_eq!((outcome.base_offset, outcome.duplicate), (20, false));

    // It survives a reopen as any log does.
    let end = follower.log_end_offset();
    follower.close().expect("close");
    let reopened = PartitionLog::open(&dir.path().join("follower"), small_config(800), 0)
        .expect("reopen follower");
    assert_eq!(reopened.log_end_offset(), end);
    assert_eq!(reopened.leader_epochs(), &[(0, 0), (3, 10), (4, 20)]);
}

#[test]
fn a_follower_refuses_batches_that_would_damage_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut leader =
        PartitionLog::open(&dir.path().join("leader"), small_config(1 << 20), 0).expect("open");
    let mut follower =
        PartitionLog::open(&dir.path().join("follower"), small_config(1 << 20), 0).expect("open");
    for (i, epoch) in [(0, 2), (1, 2), (2, 1)] {
        let mut bytes = batch(1, &format!("b{i}"), 10, NOW, None);
        // The leader's own epochs only grow; the third is forged below.
        leader
            .append(&mut bytes, epoch.max(2), NOW)
            .expect("leader append");
    }
    let stored = stored_batches(&leader, 0);

    // Not at the log end: a gap, or a batch already held.
    match follower.append_replicated(&stored[1], NOW) {
        Err(AppendError::NotAtLogEnd {
            base_offset: 1,
            log_end_offset: 0,
        }) => {}
        other => panic!("a gap must be refused: {other:?}"),
    }
    follower.append_replicated(&stored[0], NOW).expect("first");
    assert!(matches!(
        follower.append_replicated(&stored[0], NOW),
        Err(AppendError::NotAtLogEnd { .. })
    ));

    // A flipped byte fails the CRC.
    let mut corrupt = stored[1].clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(matches!(
        follower.append_replicated(&corrupt, NOW),
        Err(AppendError::InvalidBatch(_))
    ));

    // Two batches in one call, or a torn one.
    let two = [stored[1].clone(), stored[2].clone()].concat();
    assert!(follower.append_replicated(&two, NOW).is_err());
    assert!(follower
        .append_replicated(&stored[1][..stored[1].len() - 3], NOW)
        .is_err());

    // A leader epoch older than the log's last one.
    follower.append_replicated(&stored[1], NOW).expect("second");
    let mut older = stored[2].clone();
    runnel_protocol::record_batch::set_partition_leader_epoch(&mut older, 1);
    assert!(matches!(
        follower.append_replicated(&older, NOW),
        Err(AppendError::InvalidBatch(_))
    ));
    assert_eq!(follower.log_end_offset(), 2, "nothing refused was written");
    follower.append_replicated(&stored[2], NOW).expect("third");
    assert_eq!(segment_bytes(&follower), segment_bytes(&leader));
}
