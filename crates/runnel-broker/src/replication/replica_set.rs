//! One partition's replicas as this broker sees them: whether it leads the partition, the
//! replicas and in-sync replicas the metadata image names, and, on the leader, each
//! follower's log end offset as its last fetch reported it (Kafka's `Replica` state in
//! `Partition.scala`).
//!
//! The high watermark it yields is the minimum, over the in-sync replicas, of what each
//! holds: the leader's own part is its local end (its fsync'd offset in durable mode, its log
//! end otherwise), a follower's is the offset its fetch asked for, which a follower in durable
//! mode only asks for once everything below it is fsync'd there (`fetcher.rs`). A follower
//! that has not fetched since this broker took the lead holds nothing known yet, so the high
//! watermark waits for it, as Kafka's does for a follower whose log end offset is unknown.
//! With a single replica the high watermark is the local end, as it was before replication.
//!
//! The in-sync replicas it counts are the image's and, from the moment the leader proposes
//! an ISR that adds replicas, those too, until an image at another partition epoch answers
//! the proposal or the controller refuses it (Kafka's `PendingExpandIsr` and its
//! `maximalIsr`). A replica is proposed because it holds the high watermark; counting it from
//! then on keeps the high watermark from running past it while the change commits, so a
//! replica that enters the ISR holds everything below the high watermark and may be elected
//! without losing acknowledged records. Counting the image's ISR alone, the history run
//! (`tests/clients/python/history_run.py`) saw a consumer read offsets that the next leader,
//! elected moments after it joined the ISR, did not hold.

use std::collections::HashMap;

use runnel_metadata::PartitionImage;

/// A follower's state on the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The offset its last fetch started at: it holds every record below.
    pub log_end_offset: i64,
    /// When it last fetched, in ms since the epoch.
    pub last_fetch_ms: i64,
    /// The leader's log end offset at that fetch.
    pub last_fetch_leader_end: i64,
    /// The last time it was known to hold everything the leader held (Kafka's
    /// `lastCaughtUpTimeMs`): a fetch at the leader's log end offset makes it that fetch's
    /// time; a fetch at the leader's end as of the previous fetch, the previous fetch's time.
    /// What `replica.lag.time.max.ms` is measured against.
    pub last_caught_up_ms: i64,
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct ReplicaSet {
    node_id: i32,
    led_here: bool,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    followers: HashMap<i32, FollowerState>,
    /// When this broker took the lead: a follower not heard from since counts as caught up
    /// then (Kafka starts every ISR member's clock at the leader change).
    led_since_ms: i64,
    /// The log end offset when this broker took the lead: a follower joins the ISR only
    /// once it holds that much, so it has truncated to this leader's log first.
    leader_start_offset: i64,
    /// Replicas proposed for the ISR at this partition epoch and not yet answered: counted
    /// by the high watermark as if they were in it (see the module doc).
    proposed: Vec<i32>,
    /// Whether a proposal at this partition epoch went unanswered (its outcome unknown): a
    /// later refusal then does not clear [`ReplicaSet::proposed`], since the earlier
    /// proposal may still commit.
    proposal_outcome_unknown: bool,
}

/// A fetch from a broker that holds no replica of the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAReplica;

impl ReplicaSet {
    /// The replicas `image` names, as broker `node_id` sees them, opened at `now_ms` with
    /// `log_end_offset` (where a leadership it starts with begins).
    pub fn new(
        node_id: i32,
        image: &PartitionImage,
        log_end_offset: i64,
        now_ms: i64,
    ) -> ReplicaSet {
        let mut set = ReplicaSet {
            node_id,
            led_here: false,
            leader_epoch: image.leader_epoch,
            partition_epoch: image.partition_epoch,
            replicas: Vec::new(),
            isr: Vec::new(),
            followers: HashMap::new(),
            led_since_ms: 0,
            leader_start_offset: 0,
            proposed: Vec::new(),
            proposal_outcome_unknown: false,
        };
        set.assign(image, log_end_offset, now_ms);
        set
    }

    /// Takes the image's leader, replicas and ISR. A follower no longer among the replicas is
    /// forgotten; the others keep what they reported, unless this broker has just taken the
    /// lead, or leads at a new leader epoch (what they reported to an earlier leadership no
    /// longer counts, as Kafka's `makeLeader` resets its remote replicas on a new epoch: an
    /// image that moved the lead away and back may reach this broker as one).
    /// `log_end_offset` and `now_ms` start a new leadership's clock.
    /// Returns whether this broker now leads and did not before, or at another epoch.
    pub fn assign(&mut self, image: &PartitionImage, log_end_offset: i64, now_ms: i64) -> bool {
        let led_here = image.leader == self.node_id;
        let became_leader = led_here && (!self.led_here || image.leader_epoch != self.leader_epoch);
        if became_leader || !led_here || image.partition_epoch != self.partition_epoch {
            self.proposed.clear();
            self.proposal_outcome_unknown = false;
        }
        self.led_here = led_here;
        self.leader_epoch = image.leader_epoch;
        self.partition_epoch = image.partition_epoch;
        if became_leader {
            self.led_since_ms = now_ms;
            self.leader_start_offset = log_end_offset;
        }
        self.replicas = image.replicas.clone();
        self.isr = image.isr.clone();
        if became_leader || !led_here {
            self.followers.clear();
        } else {
            let replicas = &self.replicas;
            self.followers.retain(|id, _| replicas.contains(id));
        }
        became_leader
    }

    pub fn led_here(&self) -> bool {
        self.led_here
    }

    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// The leader and partition epochs of the image this set was assigned from.
    pub fn epochs(&self) -> (i32, i32) {
        (self.leader_epoch, self.partition_epoch)
    }

    /// Whether other brokers hold replicas of the partition.
    pub fn has_followers(&self) -> bool {
        self.replicas.iter().any(|&id| id != self.node_id)
    }

    /// What follower `node_id` last reported, if it fetched since this broker took the lead.
    pub fn follower(&self, node_id: i32) -> Option<FollowerState> {
        self.followers.get(&node_id).copied()
    }

    /// Records a fetch by follower `node_id` at `fetch_offset` (at most `log_end_offset`, the
    /// leader's: a fetch beyond it holds nothing more) at `now_ms`.
    pub fn follower_fetched(
        &mut self,
        node_id: i32,
        fetch_offset: i64,
        log_end_offset: i64,
        now_ms: i64,
    ) -> Result<(), NotAReplica> {
        if node_id == self.node_id || !self.replicas.contains(&node_id) {
            return Err(NotAReplica);
        }
        let offset = fetch_offset.min(log_end_offset);
        let led_since_ms = self.led_since_ms;
        let state = self.followers.entry(node_id).or_insert(FollowerState {
            log_end_offset: offset,
            last_fetch_ms: now_ms,
            last_fetch_leader_end: i64::MAX,
            last_caught_up_ms: led_since_ms,
        });
        if offset >= log_end_offset {
            state.last_caught_up_ms = now_ms;
        } else if offset >= state.last_fetch_leader_end {
            state.last_caught_up_ms = state.last_caught_up_ms.max(state.last_fetch_ms);
        }
        state.log_end_offset = offset;
        state.last_fetch_ms = now_ms;
        state.last_fetch_leader_end = log_end_offset;
        Ok(())
    }

    /// The ISR this leader should ask for (Kafka's `maybeShrinkIsr` and `maybeExpandIsr`):
    /// without the followers that have not caught up within `lag_max_ms` of `now_ms`, and
    /// with the replicas outside it that hold everything below `high_watermark` and this
    /// leadership's start, have caught up within `lag_max_ms`, and are not `fenced`. The
    /// current order is kept, additions go last. `None` on a broker that does not lead.
    pub fn desired_isr(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        high_watermark: i64,
        fenced: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        if !self.led_here {
            return None;
        }
        let caught_up_since = |id: i32| {
            self.followers
                .get(&id)
                .map_or(self.led_since_ms, |f| f.last_caught_up_ms)
        };
        let recent = |id: i32| now_ms.saturating_sub(caught_up_since(id)) <= lag_max_ms;
        let mut isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|&id| id == self.node_id || recent(id))
            .collect();
        if !isr.contains(&self.node_id) {
            isr.insert(0, self.node_id);
        }
        for &id in &self.replicas {
            if isr.contains(&id) || fenced(id) {
                continue;
            }
            let Some(state) = self.followers.get(&id) else {
                continue;
            };
            if state.log_end_offset >= high_watermark
                && state.log_end_offset >= self.leader_start_offset
                && recent(id)
            {
                isr.push(id);
            }
        }
        Some(isr)
    }

    /// [`ReplicaSet::desired_isr`], recorded as proposed when it differs from the image's
    /// ISR: its additions count for the high watermark from now on (see the module doc).
    /// `None` on a broker that does not lead, or when there is nothing to change. Call it
    /// with the high watermark read under the partition's lock, as this set is.
    pub fn propose_isr(
        &mut self,
        now_ms: i64,
        lag_max_ms: i64,
        high_watermark: i64,
        fenced: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        let isr = self.desired_isr(now_ms, lag_max_ms, high_watermark, fenced)?;
        if isr == self.isr {
            return None;
        }
        for &id in &isr {
            if !self.isr.contains(&id) && !self.proposed.contains(&id) {
                self.proposed.push(id);
            }
        }
        Some(isr)
    }

    /// The answer to a proposal made at `partition_epoch` was an error: `refused` when the
    /// controller surely did not record it (its proposed replicas stop counting unless an
    /// earlier proposal's outcome is unknown), otherwise its outcome is unknown (they keep
    /// counting until an image at another partition epoch arrives).
    pub fn proposal_failed(&mut self, partition_epoch: i32, refused: bool) {
        if partition_epoch != self.partition_epoch {
            return;
        }
        if !refused {
            self.proposal_outcome_unknown = true;
        } else if !self.proposal_outcome_unknown {
            self.proposed.clear();
        }
    }

    /// The replicas proposed for the ISR and not yet answered.
    pub fn proposed(&self) -> &[i32] {
        &self.proposed
    }

    /// The high watermark the in-sync replicas allow, given the leader's `local_end` (see the
    /// module doc): the image's ISR and the replicas proposed for it. `None` on a broker that
    /// does not lead the partition.
    pub fn high_watermark(&self, local_end: i64) -> Option<i64> {
        if !self.led_here {
            return None;
        }
        let mut high_watermark = local_end;
        for &id in self.isr.iter().chain(&self.proposed) {
            if id == self.node_id {
                continue;
            }
            match self.followers.get(&id) {
                Some(state) => high_watermark = high_watermark.min(state.log_end_offset),
                None => return Some(i64::MIN),
            }
        }
        Some(high_watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionImage {
        PartitionImage {
            partition: 0,
            leader,
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            partition_epoch: 0,
        }
    }

    #[test]
    fn a_single_replica_is_its_own_high_watermark() {
        let set = ReplicaSet::new(1, &PartitionImage::led_by(0, 1), 0, 0);
        assert!(set.led_here() && !set.has_followers());
        assert_eq!(set.high_watermark(42), Some(42));
    }

    #[test]
    fn the_high_watermark_is_the_least_any_in_sync_replica_holds() {
        let mut set = ReplicaSet::new(1, &image(1, &[1, 2, 3], &[1, 2, 3]), 0, 0);
        assert_eq!(
            set.high_watermark(10),
            Some(i64::MIN),
            "followers unknown yet"
        );
        set.follower_fetched(2, 7, 10, 100).expect("replica");
        assert_eq!(set.high_watermark(10), Some(i64::MIN), "3 still unknown");
        set.follower_fetched(3, 12, 10, 100).expect("replica");
        assert_eq!(set.follower(3).map(|f| f.log_end_offset), Some(10));
        assert_eq!(set.follower(3).map(|f| f.last_caught_up_ms), Some(100));
        assert_eq!(set.follower(2).map(|f| f.last_caught_up_ms), Some(0));
        assert_eq!(set.high_watermark(10), Some(7));
        assert_eq!(
            set.high_watermark(5),
            Some(5),
            "the leader's own end counts"
        );
        // Out of the ISR, a slow follower no longer holds the high watermark back.
        set.assign(&image(1, &[1, 2, 3], &[1, 3]), 10, 100);
        assert_eq!(set.high_watermark(10), Some(10));
        assert_eq!(
            set.follower(2).map(|f| f.log_end_offset),
            Some(7),
            "still tracked"
        );
    }

    #[test]
    fn only_replicas_fetch_and_only_the_leader_has_a_high_watermark() {
        let mut set = ReplicaSet::new(2, &image(1, &[1, 2], &[1, 2]), 0, 0);
        assert!(!set.led_here());
        assert_eq!(set.high_watermark(10), None);
        let mut leader = ReplicaSet::new(1, &image(1, &[1, 2], &[1, 2]), 0, 0);
        assert_eq!(leader.follower_fetched(3, 0, 0, 0), Err(NotAReplica));
        assert_eq!(leader.follower_fetched(1, 0, 0, 0), Err(NotAReplica));
        leader.follower_fetched(2, 4, 9, 1).expect("replica");
        // A new leadership starts with nothing known of the followers.
        leader.assign(&image(2, &[1, 2], &[1, 2]), 9, 1);
        assert!(leader.assign(&image(1, &[1, 2], &[1, 2]), 9, 1));
        assert_eq!(leader.follower(2), None);
        assert!(
            set.assign(&image(2, &[1, 2], &[1, 2]), 0, 0),
            "became leader"
        );
    }

    #[test]
    fn a_follower_counts_as_caught_up_when_it_reaches_the_leaders_end_of_its_last_fetch() {
        let mut set = ReplicaSet::new(1, &image(1, &[1, 2], &[1, 2]), 0, 0);
        set.follower_fetched(2, 0, 10, 1_000).expect("replica");
        assert_eq!(set.follower(2).map(|f| f.last_caught_up_ms), Some(0));
        // It reached 10, the leader's end at its last fetch: caught up as of that fetch.
        set.follower_fetched(2, 10, 20, 1_100).expect("replica");
        assert_eq!(set.follower(2).map(|f| f.last_caught_up_ms), Some(1_000));
        // Behind what the leader had at its last fetch: no progress.
        set.follower_fetched(2, 15, 30, 1_200).expect("replica");
        assert_eq!(set.follower(2).map(|f| f.last_caught_up_ms), Some(1_000));
        set.follower_fetched(2, 30, 30, 1_300).expect("replica");
        assert_eq!(set.follower(2).map(|f| f.last_caught_up_ms), Some(1_300));
    }

    #[test]
    fn the_isr_drops_lagging_followers_and_takes_back_caught_up_ones() {
        let mut set = ReplicaSet::new(1, &image(1, &[1, 2, 3], &[1, 2, 3]), 0, 0);
        set.assign(&image(1, &[1, 2, 3], &[1, 2, 3]), 0, 0);
        let none = |_| false;
        set.follower_fetched(2, 50, 50, 20_000).expect("replica");
        // 3 has not fetched since the leadership began at 0; 30 s later it is out.
        assert_eq!(
            set.desired_isr(25_000, 30_000, 50, none),
            Some(vec![1, 2, 3])
        );
        assert_eq!(set.desired_isr(30_001, 30_000, 50, none), Some(vec![1, 2]));
        set.assign(&image(1, &[1, 2, 3], &[1, 2]), 50, 30_001);
        // Back but behind the high watermark: still out.
        set.follower_fetched(3, 40, 60, 31_000).expect("replica");
        assert_eq!(set.desired_isr(31_000, 30_000, 50, none), Some(vec![1, 2]));
        // Caught up: in again, last; unless it is fenced.
        set.follower_fetched(3, 60, 60, 31_500).expect("replica");
        assert_eq!(
            set.desired_isr(31_500, 30_000, 55, none),
            Some(vec![1, 2, 3])
        );
        assert_eq!(
            set.desired_isr(31_500, 30_000, 55, |id| id == 3),
            Some(vec![1, 2])
        );
        let follower = ReplicaSet::new(2, &image(1, &[1, 2], &[1, 2]), 0, 0);
        assert_eq!(follower.desired_isr(0, 1, 0, none), None);
    }

    fn image_at(partition_epoch: i32, isr: &[i32]) -> PartitionImage {
        PartitionImage {
            partition_epoch,
            ..image(1, &[1, 2, 3], isr)
        }
    }

    /// Kafka's `maximalIsr`: a replica proposed for the ISR holds the high watermark back
    /// from the proposal on, so that once it is in the ISR (and may be elected) it holds
    /// everything below the high watermark.
    #[test]
    fn a_replica_proposed_for_the_isr_holds_the_high_watermark_until_the_answer() {
        let none = |_| false;
        let mut set = ReplicaSet::new(1, &image_at(0, &[1, 2]), 100, 0);
        set.follower_fetched(2, 100, 100, 10).expect("replica");
        set.follower_fetched(3, 100, 100, 10).expect("replica");
        assert_eq!(set.propose_isr(10, 30_000, 100, none), Some(vec![1, 2, 3]));
        assert_eq!(set.proposed(), &[3]);
        // The leader and 2 reach 150 while the change commits; 3 is still at 100.
        set.follower_fetched(2, 150, 150, 20).expect("replica");
        assert_eq!(set.high_watermark(150), Some(100), "3 counts already");
        // Committed: 3 is in the image's ISR, and nothing above 100 was exposed meanwhile.
        set.assign(&image_at(1, &[1, 2, 3]), 150, 30);
        assert!(set.proposed().is_empty());
        assert_eq!(set.high_watermark(150), Some(100));
        assert_eq!(
            set.propose_isr(30, 30_000, 100, none),
            None,
            "nothing to change"
        );

        // A refusal lets the high watermark go on without the replica.
        let mut set = ReplicaSet::new(1, &image_at(4, &[1, 2]), 100, 0);
        set.follower_fetched(2, 150, 150, 10).expect("replica");
        set.follower_fetched(3, 150, 150, 10).expect("replica");
        assert!(set.propose_isr(10, 30_000, 150, none).is_some());
        set.follower_fetched(2, 200, 200, 20).expect("replica");
        assert_eq!(set.high_watermark(200), Some(150));
        set.proposal_failed(3, true);
        assert_eq!(set.proposed(), &[3], "an answer about another epoch");
        set.proposal_failed(4, true);
        assert_eq!(set.high_watermark(200), Some(200));

        // An unknown outcome keeps it counted, even past a later refusal, until an image at
        // another partition epoch settles it.
        let mut set = ReplicaSet::new(1, &image_at(7, &[1, 2]), 100, 0);
        set.follower_fetched(2, 150, 150, 10).expect("replica");
        set.follower_fetched(3, 150, 150, 10).expect("replica");
        assert!(set.propose_isr(10, 30_000, 150, none).is_some());
        set.proposal_failed(7, false);
        assert!(set.propose_isr(11, 30_000, 150, none).is_some());
        set.proposal_failed(7, true);
        assert_eq!(set.proposed(), &[3]);
        set.assign(&image_at(8, &[1, 2]), 150, 12);
        assert!(set.proposed().is_empty());
    }
}
