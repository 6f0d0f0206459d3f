//! One run: build the simulated network and hosts for a seed, drive it through its phases,
//! and judge its history.
//!
//! Phases, in simulated time:
//! 1. Warm-up ([`SimConfig::warmup`]): no faults; the nodes form the quorum and elect.
//! 2. Faults ([`SimConfig::fault_time`]): [`Chaos`] applies a fault every 0.2 to 1.8 s; the
//!    lagging node is crashed early and kept down (removed from the voters and added back
//!    meanwhile, when the run changes voters), then restarted.
//! 3. Heal: every fault ends, every node runs, the driver stops proposing (it still finishes a
//!    change of voters). The run ends as soon as every image equals the leader's, or fails
//!    when [`SimConfig::converge_deadline`] passes first.
//!
//! Then [`crate::invariants`] judge the whole history.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use runnel_controller::NodeId;

use crate::driver::{self, Membership, MembershipStep, Pace};
use crate::faults::{Chaos, FaultCounts};
use crate::history::History;
use crate::host::{self, host_name, Shared, SharedRef, Tuning};
use crate::invariants;
use crate::{Violation, ViolationKind};

/// How often convergence is checked after the heal.
const CONVERGE_POLL: Duration = Duration::from_millis(100);

/// What one run simulates.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Controllers (voters): 3 or 5 in the fixed seeds.
    pub voters: usize,
    /// Broker-only nodes (non-voting learners, `QuorumConfig::learner`), after the voters'
    /// ids. They are crashed, cut off and slowed like the voters, never removed by the change
    /// of voters, and their images must converge too. One by default.
    pub learners: usize,
    pub warmup: Duration,
    pub fault_time: Duration,
    pub converge_deadline: Duration,
    /// Simulated time per turmoil step: each host runs this long per step, and a message is
    /// delivered at the first step after its latency.
    pub tick: Duration,
    /// Every link's latency is 1 ms to this, outside slow-link faults.
    pub latency_max: Duration,
    pub tuning: Tuning,
    pub pace: Pace,
    /// Crash one node early and keep it down while the log moves past it.
    pub lagging_node: bool,
    /// Remove the lagging node from the voters while it is down and add it back
    /// (`MetadataQuorum::change_voters`); needs `lagging_node`.
    pub change_voters: bool,
    /// Where the runs' data dirs go: `/dev/shm` when it exists, else the system's temp dir.
    pub data_root: Option<PathBuf>,
}

impl SimConfig {
    /// The fixed seeds' settings for `voters` controllers.
    pub fn new(voters: usize) -> SimConfig {
        SimConfig {
            voters,
            learners: 1,
            warmup: Duration::from_secs(2),
            fault_time: Duration::from_secs(16),
            converge_deadline: Duration::from_secs(30),
            tick: Duration::from_millis(5),
            latency_max: Duration::from_millis(4),
            tuning: Tuning {
                election_timeout_ms: 1000,
                heartbeat_interval_ms: 100,
                snapshot_interval_entries: 5,
                log_entries_kept_after_snapshot: 2,
                log_segment_bytes: 4096,
            },
            pace: Pace {
                interval: Duration::from_millis(120),
                answer_timeout: Duration::from_secs(5),
            },
            lagging_node: true,
            change_voters: true,
            data_root: None,
        }
    }
}

/// What a clean run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub voters: usize,
    pub learners: usize,
    /// Simulated time the run took, heal and convergence included.
    pub simulated: Duration,
    pub proposals: usize,
    pub acked: usize,
    /// The highest term any node reached.
    pub term_max: u64,
    pub faults: FaultCounts,
    /// Where the change of voters got to (`None`: the run made none).
    pub membership: Option<MembershipStep>,
    /// Simulated time from the heal until every image was the leader's.
    pub converged_after: Duration,
}

/// Runs `seed` under `config`: `Ok` with what happened, or the first invariant broken.
pub fn run(seed: u64, config: SimConfig) -> Result<Report, Violation> {
    let violation = |kind: ViolationKind, history: &History| Violation {
        seed,
        voters: config.voters,
        kind: Box::new(kind),
        faults: history.fault_lines(),
    };
    let root = data_root(&config)
        .map_err(|error| violation(ViolationKind::Setup(error.to_string()), &History::default()))?;
    let voters: Vec<NodeId> = (1..=config.voters as NodeId).collect();
    let nodes: Vec<NodeId> = (1..=(config.voters + config.learners) as NodeId).collect();
    let shared: SharedRef = Rc::new(RefCell::new(Shared::default()));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(Duration::from_secs(24 * 3600))
        .tick_duration(config.tick)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(config.latency_max)
        .tcp_capacity(4096)
        .build();
    for &id in &nodes {
        let dir = root.path().join(format!("node-{id}"));
        let (all, tuning, shared) = (voters.clone(), config.tuning, Rc::clone(&shared));
        let learner = !voters.contains(&id);
        sim.host(host_name(id), move || {
            let (all, dir, shared) = (all.clone(), dir.clone(), Rc::clone(&shared));
            host::run_node(id, all, learner, tuning, dir, shared, seed)
        });
    }
    sim.client(
        "driver",
        driver::drive(seed, voters.clone(), config.pace, Rc::clone(&shared)),
    );

    let mut chaos = Chaos::new(
        SmallRng::seed_from_u64(seed),
        nodes.clone(),
        voters.clone(),
        config.latency_max,
    );
    let mut plan = Plan::new(&config, &mut chaos);
    let fault_end = config.warmup + config.fault_time;
    let mut next_fault = config.warmup;
    let mut healed_at = None;
    let mut next_poll = Duration::ZERO;
    let outcome = loop {
        if let Err(error) = sim.step() {
            break Err(ViolationKind::Host(error.to_string()));
        }
        let now = sim.elapsed();
        if now < fault_end {
            plan.lag(&mut sim, &shared, &mut chaos, &voters, now);
            if now >= next_fault {
                chaos.act(&mut sim, &shared, now);
                next_fault = now + Duration::from_millis(chaos.rng().random_range(200..1800));
            }
            continue;
        }
        let Some(healed) = healed_at else {
            chaos.heal(&mut sim, &shared, now);
            shared.borrow_mut().stop_proposing = true;
            healed_at = Some(now);
            continue;
        };
        if now < next_poll {
            continue;
        }
        next_poll = now + CONVERGE_POLL;
        let shared = shared.borrow();
        let membership_done = shared.membership.is_none_or(|m| m.done());
        let converged = invariants::images_converge::check(&shared.history, &nodes);
        match converged {
            Ok(()) if membership_done => break Ok(now - healed),
            Err(error) if now - healed > config.converge_deadline => {
                break Err(ViolationKind::NotConverged(error))
            }
            Ok(()) if now - healed > config.converge_deadline => {
                break Err(ViolationKind::MembershipUnfinished)
            }
            _ => {}
        }
    };
    let simulated = sim.elapsed();
    drop(sim);
    let shared = Rc::try_unwrap(shared)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| std::mem::take(&mut *shared.borrow_mut()));
    let history = shared.history;
    let converged_after = outcome.map_err(|kind| violation(kind, &history))?;
    invariants::one_leader_per_term::check(&history)
        .map_err(|error| violation(ViolationKind::TwoLeaders(error), &history))?;
    invariants::committed_never_lost::check(&history)
        .map_err(|error| violation(ViolationKind::CommittedLost(error), &history))?;
    Ok(Report {
        seed,
        voters: config.voters,
        learners: config.learners,
        simulated,
        proposals: history.proposals.len(),
        acked: history.acked().count(),
        term_max: history.roles().map(|role| role.term).max().unwrap_or(0),
        faults: chaos.counts,
        membership: shared.membership.map(|m| m.step),
        converged_after,
    })
}

/// When the lagging node goes down and comes back.
struct Plan {
    lag_from: Option<Duration>,
    lag_until: Duration,
    change_voters: bool,
    lagged: bool,
}

impl Plan {
    fn new(config: &SimConfig, chaos: &mut Chaos) -> Plan {
        let fault_ms = config.fault_time.as_millis() as u64;
        if !config.lagging_node || fault_ms < 1000 {
            return Plan {
                lag_from: None,
                lag_until: Duration::ZERO,
                change_voters: false,
                lagged: false,
            };
        }
        let rng = chaos.rng();
        let lag_from = config.warmup + Duration::from_millis(rng.random_range(0..fault_ms / 5));
        let lag_until =
            lag_from + Duration::from_millis(rng.random_range(fault_ms * 2 / 5..fault_ms * 3 / 5));
        Plan {
            lag_from: Some(lag_from),
            lag_until,
            change_voters: config.change_voters,
            lagged: false,
        }
    }

    /// Crashes the lagging node when its time comes, and restarts it once its time is up and
    /// the change of voters (if any) has added it back.
    fn lag(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        shared: &SharedRef,
        chaos: &mut Chaos,
        nodes: &[NodeId],
        now: Duration,
    ) {
        let Some(lag_from) = self.lag_from else {
            return;
        };
        match chaos.lagging {
            None if !self.lagged && now >= lag_from && now < self.lag_until => {
                self.lagged = true;
                let leader = driver::leader_of(shared).map(|quorum| quorum.node_id());
                let candidates: Vec<NodeId> = nodes
                    .iter()
                    .copied()
                    .filter(|id| Some(*id) != leader)
                    .collect();
                let id = *candidates.choose(chaos.rng()).expect("a follower");
                if !chaos.is_down(id) {
                    chaos.crash(sim, shared, id, now);
                }
                chaos.lagging = Some(id);
                if !self.change_voters {
                    return;
                }
                let remove_at = now + Duration::from_millis(chaos.rng().random_range(800..2500));
                let readd_at =
                    remove_at + Duration::from_millis(chaos.rng().random_range(1500..5000));
                shared.borrow_mut().membership = Some(Membership {
                    lagging: id,
                    remove_at,
                    readd_at,
                    step: MembershipStep::Planned,
                });
            }
            Some(id) if now >= self.lag_until => {
                let readded = shared.borrow().membership.is_none_or(|m| m.done());
                if readded {
                    chaos.lagging = None;
                    if chaos.is_down(id) {
                        chaos.restart(sim, shared, id, now);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A fresh directory for one run's data dirs, removed when dropped.
fn data_root(config: &SimConfig) -> std::io::Result<tempfile::TempDir> {
    let parent = config.data_root.clone().unwrap_or_else(|| {
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    tempfile::Builder::new()
        .prefix("runnel-sim-")
        .tempdir_in(parent)
}
