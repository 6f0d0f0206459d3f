//! `runnel-sim`: run one seed, or sweep many, from the command line (see the crate doc).
//!
//! ```text
//! runnel-sim run   --seed 42 --nodes 5
//! runnel-sim sweep --seeds 0..10000 --nodes 3,5 --jobs 2
//! ```
//! `--learners N` adds N broker-only nodes to each run.
//! A sweep runs seeds on `--jobs` threads (each run is single-threaded), prints a line per
//! failure with the command that runs it again, a progress line every 500 runs, and a summary;
//! it exits 1 if any seed failed.

use std::ops::Range;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use runnel_sim::{run, SimConfig, Violation};

const USAGE: &str = "usage: runnel-sim run --seed N [--nodes 3] [--learners 1]\n       \
                     runnel-sim sweep --seeds A..B [--nodes 3,5] [--learners 1] [--jobs 2]";

/// Runs between two progress lines of a sweep.
const PROGRESS_EVERY: usize = 500;

struct Args {
    command: String,
    /// Broker-only nodes per run (`SimConfig::learners`).
    learners: usize,
    seeds: Range<u64>,
    nodes: Vec<usize>,
    jobs: usize,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let command = args.first().cloned().ok_or("no command")?;
    let mut parsed = Args {
        command,
        learners: 1,
        seeds: 0..1,
        nodes: vec![3],
        jobs: 2,
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {value}: {what}");
        match flag.as_str() {
            "--seed" => {
                let seed: u64 = value.parse().map_err(|_| bad("not a number"))?;
                parsed.seeds = seed..seed + 1;
            }
            "--seeds" => {
                let (from, to) = value.split_once("..").ok_or(bad("not A..B"))?;
                let from = from.parse().map_err(|_| bad("not a number"))?;
                let to = to.parse().map_err(|_| bad("not a number"))?;
                parsed.seeds = from..to;
            }
            "--nodes" => {
                parsed.nodes = value
                    .split(',')
                    .map(|n| n.parse().map_err(|_| bad("not a list of numbers")))
                    .collect::<Result<_, _>>()?;
                if parsed.nodes.contains(&0) {
                    return Err(bad("a quorum needs a node"));
                }
            }
            "--learners" => {
                parsed.learners = value.parse().map_err(|_| bad("not a number"))?;
            }
            "--jobs" => {
                parsed.jobs = value.parse().map_err(|_| bad("not a number"))?;
                parsed.jobs = parsed.jobs.max(1);
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("{error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let command = args.command.clone();
    match command.as_str() {
        "run" => run_one(&args),
        "sweep" => sweep(args),
        other => {
            eprintln!("unknown command {other}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn config(args: &Args, nodes: usize) -> SimConfig {
    let mut config = SimConfig::new(nodes);
    config.learners = args.learners;
    config
}

fn run_one(args: &Args) -> ExitCode {
    let mut failed = false;
    for &nodes in &args.nodes {
        let started = Instant::now();
        match run(args.seeds.start, config(args, nodes)) {
            Ok(report) => println!("ok in {:.2?}: {report:?}", started.elapsed()),
            Err(violation) => {
                print_violation(&violation);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_violation(violation: &Violation) {
    println!("FAILED {violation}");
    println!(
        "  again: cargo run --release -p runnel-sim -- run --seed {} --nodes {}",
        violation.seed, violation.voters
    );
    for line in &violation.faults {
        println!("  {line}");
    }
}

fn sweep(args: Args) -> ExitCode {
    let args = Arc::new(args);
    let work: Vec<(u64, usize)> = args
        .seeds
        .clone()
        .flat_map(|seed| args.nodes.iter().map(move |nodes| (seed, *nodes)))
        .collect();
    let total = work.len();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let simulated_ms = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let work = Arc::new(work);
    let started = Instant::now();
    let threads: Vec<_> = (0..args.jobs)
        .map(|_| {
            let (next, done, work) = (Arc::clone(&next), Arc::clone(&done), Arc::clone(&work));
            let (failures, simulated_ms) = (Arc::clone(&failures), Arc::clone(&simulated_ms));
            let args = Arc::clone(&args);
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(seed, nodes)) = work.get(i) else {
                    return;
                };
                let outcome = std::panic::catch_unwind(|| run(seed, config(&args, nodes)));
                let failure = match outcome {
                    Ok(Ok(report)) => {
                        let ms = report.simulated.as_millis() as u64;
                        simulated_ms.fetch_add(ms, Ordering::Relaxed);
                        None
                    }
                    Ok(Err(violation)) => {
                        print_violation(&violation);
                        Some(violation.kind.to_string())
                    }
                    Err(_) => {
                        println!("FAILED seed {seed} with {nodes} voters: the run panicked");
                        Some("the run panicked".to_string())
                    }
                };
                if let Some(kind) = failure {
                    let mut failures = failures.lock().expect("failures lock");
                    failures.push((seed, nodes, kind));
                }
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished % PROGRESS_EVERY == 0 {
                    println!(
                        "{finished}/{total} runs in {:.0?}, {} failed",
                        started.elapsed(),
                        failures.lock().expect("failures lock").len()
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        if thread.join().is_err() {
            eprintln!("a sweep thread panicked");
            return ExitCode::FAILURE;
        }
    }
    let failures = failures.lock().expect("failures lock");
    println!(
        "{total} runs ({} seeds x nodes {:?}) in {:.1?} wall, {:.0} s simulated: {} failed",
        args.seeds.end.saturating_sub(args.seeds.start),
        args.nodes,
        started.elapsed(),
        simulated_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        failures.len(),
    );
    for (seed, nodes, kind) in failures.iter() {
        println!("  seed {seed} nodes {nodes}: {kind}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
