//! The faults of a run, chosen by a seeded RNG as simulated time passes, and the heal that
//! ends them: crashes and restarts of any node (the leader too), partitions (a random
//! minority, or the leader alone or with one other, cut off from the rest), lossy links
//! (turmoil's fail rate: a failing link drops what is in flight on it) and slow links (a
//! higher maximum latency), and one lagging node kept down long enough that the leader purges
//! its log past it, so that it catches up by InstallSnapshot.
//!
//! Bounds: at most a minority of the voters is down at once from crashes, except that one
//! crash of a voter in five may take the quorum below a majority (nothing commits until a
//! restart); learners are crashed freely; one partition at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use runnel_controller::NodeId;
use turmoil::Sim;

use crate::history::Event;
use crate::host::{host_name, SharedRef};

/// How many faults of each kind a run applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub crashes: usize,
    pub restarts: usize,
    pub partitions: usize,
    pub lossy_links: usize,
    pub slow_links: usize,
    /// Restarts of a node whose last applied index was below every running node's purged
    /// log: it could only catch up by snapshot.
    pub restarts_behind_purged_log: usize,
}

/// The fault injector of one run.
pub struct Chaos {
    rng: SmallRng,
    nodes: Vec<NodeId>,
    /// The voters among `nodes` (the rest are learners).
    voters: Vec<NodeId>,
    down: BTreeSet<NodeId>,
    /// The lagging node while it is kept down: ordinary restarts leave it alone.
    pub lagging: Option<NodeId>,
    cut_off: Option<Vec<NodeId>>,
    bad_links: BTreeSet<(NodeId, NodeId)>,
    /// Each crashed node's last applied index when it was crashed.
    applied_at_crash: BTreeMap<NodeId, Option<u64>>,
    latency_max: Duration,
    pub counts: FaultCounts,
}

impl Chaos {
    pub fn new(
        rng: SmallRng,
        nodes: Vec<NodeId>,
        voters: Vec<NodeId>,
        latency_max: Duration,
    ) -> Chaos {
        Chaos {
            rng,
            nodes,
            voters,
            down: BTreeSet::new(),
            lagging: None,
            cut_off: None,
            bad_links: BTreeSet::new(),
            applied_at_crash: BTreeMap::new(),
            latency_max,
            counts: FaultCounts::default(),
        }
    }

    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    pub fn is_down(&self, id: NodeId) -> bool {
        self.down.contains(&id)
    }

    /// Applies one random fault (or the end of one).
    pub fn act(&mut self, sim: &mut Sim<'_>, shared: &SharedRef, now: Duration) {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..=24 => self.crash_some(sim, shared, now),
            25..=44 => {
                let waiting: Vec<NodeId> = self
                    .down
                    .iter()
                    .copied()
                    .filter(|id| Some(*id) != self.lagging)
                    .collect();
                if let Some(&id) = waiting.choose(&mut self.rng) {
                    self.restart(sim, shared, id, now);
                }
            }
            45..=59 => self.partition(sim, shared, now),
            60..=69 => self.repair_partition(sim, shared, now),
            70..=84 => {
                let (a, b) = self.pair();
                let rate = self.rng.random_range(0.01..0.2);
                sim.set_link_fail_rate(host_name(a), host_name(b), rate);
                self.bad_links.insert((a.min(b), a.max(b)));
                self.counts.lossy_links += 1;
                fault(
                    shared,
                    now,
                    format!("link n{a}-n{b} loses messages ({rate:.2})"),
                );
            }
            85..=94 => {
                let (a, b) = self.pair();
                let latency = Duration::from_millis(self.rng.random_range(50..600));
                sim.set_link_max_message_latency(host_name(a), host_name(b), latency);
                self.bad_links.insert((a.min(b), a.max(b)));
                self.counts.slow_links += 1;
                fault(
                    shared,
                    now,
                    format!("link n{a}-n{b} delays up to {latency:?}"),
                );
            }
            _ => self.heal_links(sim, shared, now),
        }
    }

    /// Crashes a running node, the leader one time in three; a voter only while a minority
    /// of the voters is down (or one time in five).
    fn crash_some(&mut self, sim: &mut Sim<'_>, shared: &SharedRef, now: Duration) {
        let up: Vec<NodeId> = self
            .nodes
            .iter()
            .copied()
            .filter(|id| !self.down.contains(id))
            .collect();
        let leader = crate::driver::leader_of(shared).map(|quorum| quorum.node_id());
        let id = match leader {
            Some(leader) if self.rng.random_bool(1.0 / 3.0) => leader,
            _ => match up.choose(&mut self.rng) {
                Some(id) => *id,
                None => return,
            },
        };
        if self.voters.contains(&id) {
            let down = self.voters.iter().filter(|v| self.down.contains(v)).count();
            let allowed = down < self.voters.len() / 2 || self.rng.random_bool(0.2);
            if !allowed || down + 1 >= self.voters.len() {
                return;
            }
        }
        self.crash(sim, shared, id, now);
    }

    /// Crashes node `id`'s host: its tasks stop where they are, its files stay as written.
    pub fn crash(&mut self, sim: &mut Sim<'_>, shared: &SharedRef, id: NodeId, now: Duration) {
        let applied = shared
            .borrow()
            .running
            .get(&id)
            .and_then(|quorum| quorum.image().borrow().applied_index());
        sim.crash(host_name(id));
        shared.borrow_mut().running.remove(&id);
        self.down.insert(id);
        self.applied_at_crash.insert(id, applied);
        self.counts.crashes += 1;
        fault(
            shared,
            now,
            format!("crash node {id} (applied up to {applied:?})"),
        );
    }

    /// Starts node `id`'s host again, on its data dir.
    pub fn restart(&mut self, sim: &mut Sim<'_>, shared: &SharedRef, id: NodeId, now: Duration) {
        let purged = shared
            .borrow()
            .running
            .values()
            .map(|quorum| quorum.metrics().borrow().purged.map(|id| id.index))
            .min()
            .flatten();
        let applied = self.applied_at_crash.remove(&id).flatten();
        if purged.is_some_and(|purged| applied.is_none_or(|applied| purged > applied)) {
            self.counts.restarts_behind_purged_log += 1;
        }
        sim.bounce(host_name(id));
        self.down.remove(&id);
        self.counts.restarts += 1;
        fault(
            shared,
            now,
            format!("restart node {id} (logs purged up to {purged:?})"),
        );
    }

    fn pair(&mut self) -> (NodeId, NodeId) {
        let two: Vec<NodeId> = self
            .nodes
            .choose_multiple(&mut self.rng, 2)
            .copied()
            .collect();
        (two[0], two[1])
    }

    fn partition(&mut self, sim: &mut Sim<'_>, shared: &SharedRef, now: Duration) {
        self.repair_partition(sim, shared, now);
        let leader = crate::driver::leader_of(shared).map(|quorum| quorum.node_id());
        let minority = self.nodes.len() / 2;
        let side: Vec<NodeId> = match (leader, self.rng.random_range(0..3)) {
            (Some(leader), 0) => vec![leader],
            (Some(leader), 1) if minority >= 2 => {
                let other = *self
                    .nodes
                    .iter()
                    .filter(|id| **id != leader)
                    .collect::<Vec<_>>()
                    .choose(&mut self.rng)
                    .expect("another node");
                vec![leader, *other]
            }
            _ => {
                let size = self.rng.random_range(1..=minority);
                self.nodes
                    .choose_multiple(&mut self.rng, size)
                    .copied()
                    .collect()
            }
        };
        let rest: Vec<NodeId> = self
            .nodes
            .iter()
            .copied()
            .filter(|id| !side.contains(id))
            .collect();
        for a in &side {
            for b in &rest {
                sim.partition(host_name(*a), host_name(*b));
            }
        }
        self.counts.partitions += 1;
        fault(shared, now, format!("partition {side:?} from {rest:?}"));
        self.cut_off = Some(side);
    }

    fn repair_partition(&mut self, sim: &mut Sim<'_>, shared: &SharedRef, now: Duration) {
        if let Some(side) = self.cut_off.take() {
            for a in &side {
                for b in self.nodes.iter().filter(|id| !side.contains(id)) {
                    sim.repair(host_name(*a), host_name(*b));
                }
            }
            fault(shared, now, format!("repair the partition of {side:?}"));
        }
    }

    fn heal_links(&mut self, sim: &mut Sim<'_>, shared: &SharedRef, now: Duration) {
        for (a, b) in std::mem::take(&mut self.bad_links) {
            sim.set_link_fail_rate(host_name(a), host_name(b), 0.0);
            sim.set_link_max_message_latency(host_name(a), host_name(b), self.latency_max);
            sim.repair(host_name(a), host_name(b));
            fault(shared, now, format!("link n{a}-n{b} healthy again"));
        }
    }

    /// Ends every fault: links healthy, partitions repaired, every node started.
    pub fn heal(&mut self, sim: &mut Sim<'_>, shared: &SharedRef, now: Duration) {
        self.repair_partition(sim, shared, now);
        self.heal_links(sim, shared, now);
        self.lagging = None;
        for id in self.down.clone() {
            self.restart(sim, shared, id, now);
        }
        let refused: Vec<NodeId> = shared.borrow().refused.iter().copied().collect();
        for id in refused {
            sim.bounce(host_name(id));
        }
        shared
            .borrow_mut()
            .history
            .record(Event::Healed { at: now });
    }
}

fn fault(shared: &SharedRef, at: Duration, what: String) {
    tracing::debug!(at = ?at, "{what}");
    shared
        .borrow_mut()
        .history
        .record(Event::Fault { at, what });
}
