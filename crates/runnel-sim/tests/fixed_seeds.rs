//! The fixed seeds CI runs: 3 and 5 controllers through crashes, restarts, partitions, lossy
//! and slow links, a lagging node that catches up by snapshot, and a change of voters while
//! it lags; every invariant is judged on every run (`runnel_sim::run`). A failure prints its
//! seed and fault timeline; the sweep (crate doc) runs many more seeds.
//!
//! Each group of seeds also checks that the runs did what they are for (proposals answered,
//! leaders crashed, a node caught up from behind a purged log, voters changed), so that a
//! simulation that quietly stopped exercising the quorum fails here.

use runnel_sim::driver::MembershipStep;
use runnel_sim::{run, Report, SimConfig};

/// Seeds per group: four groups run in parallel, about 20 s in a debug build on two cores.
const SEEDS: u64 = 24;

fn run_seeds(voters: usize, seeds: std::ops::Range<u64>) -> Vec<Report> {
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for seed in seeds {
        match run(seed, SimConfig::new(voters)) {
            Ok(report) => reports.push(report),
            Err(violation) => {
                eprintln!("FAILED {violation}");
                for line in &violation.faults {
                    eprintln!("  {line}");
                }
                failures.push(violation.to_string());
            }
        }
    }
    assert!(failures.is_empty(), "failing seeds: {failures:#?}");
    reports
}

/// What the runs of one group did between them.
fn assert_exercised(reports: &[Report]) {
    let acked: usize = reports.iter().map(|r| r.acked).sum();
    let crashes: usize = reports.iter().map(|r| r.faults.crashes).sum();
    let partitions: usize = reports.iter().map(|r| r.faults.partitions).sum();
    let behind: usize = reports
        .iter()
        .map(|r| r.faults.restarts_behind_purged_log)
        .sum();
    let readded = reports
        .iter()
        .filter(|r| r.membership == Some(MembershipStep::Readded))
        .count();
    let new_leaders = reports.iter().filter(|r| r.term_max >= 3).count();
    assert!(acked >= 20 * reports.len(), "{acked} proposals answered");
    assert!(
        crashes >= reports.len() && partitions > 0,
        "{crashes} crashes, {partitions} partitions"
    );
    assert!(behind > 0, "no restart needed a snapshot");
    assert!(readded > 0, "no run removed and re-added a voter");
    assert!(new_leaders > 0, "no run changed leaders");
}

#[test]
fn three_controllers_first_seeds() {
    assert_exercised(&run_seeds(3, 0..SEEDS));
}

#[test]
fn three_controllers_more_seeds() {
    assert_exercised(&run_seeds(3, 1000..1000 + SEEDS));
}

#[test]
fn five_controllers_first_seeds() {
    assert_exercised(&run_seeds(5, 0..SEEDS));
}

#[test]
fn five_controllers_more_seeds() {
    assert_exercised(&run_seeds(5, 1000..1000 + SEEDS));
}
