//! A seeded fuzzer over mutated real frames of every served API, against a real `runnel server`
//! process.
//!
//! The broker is started as its own process ([`broker_process`]), records are produced with
//! acks=all and their bytes noted; then workers send mutated frames built from one valid
//! request of every served API and version ([`corpus`], [`mutate`]) over many connections,
//! reconnecting whenever the broker closes one. The invariants, checked during and after the
//! run:
//! 1. the process stays alive;
//! 2. its log has no panic, abort or allocation failure ([`broker_process::FATAL_LOG_MARKERS`]);
//! 3. its resident set (`VmRSS`, sampled every 50 ms, and `VmHWM` at the end) stays under
//!    `RUNNEL_FUZZ_RSS_MAX_MIB` (default 512 MiB);
//! 4. the records acknowledged before the run read back byte for byte, at the same offsets.
//!
//! Each seed frame is valid (checked first: the broker answers it without closing the
//! connection). A failure prints the seed, the worker count and each worker's last frames.
//!
//! ```sh
//! cargo test --test frame_fuzz -- --nocapture                  # CI size (RUNNEL_FUZZ_FRAMES=20000)
//! RUNNEL_FUZZ_FRAMES=1000000 cargo test --release --test frame_fuzz -- --nocapture
//! RUNNEL_FUZZ_SEED=0x1234 RUNNEL_FUZZ_WORKERS=1 cargo test --test frame_fuzz  # replay a seed
//! ```
//! Environment: `RUNNEL_FUZZ_FRAMES` (frames in all, default 20,000), `RUNNEL_FUZZ_SEED`
//! (decimal or 0x-hex; default from the clock, printed), `RUNNEL_FUZZ_WORKERS` (connections at a
//! time, default 4; worker `w` draws from `seed ^ w·φ`, so one worker replays exactly),
//! `RUNNEL_FUZZ_RSS_MAX_MIB`, `RUNNEL_FUZZ_APIS` (comma-separated API keys: only their seeds, to
//! narrow a finding down), and `RUNNEL_BIN` (the binary; default the one Cargo built).

mod broker_process;
mod common;
#[path = "frame_fuzz/corpus.rs"]
mod corpus;
#[path = "frame_fuzz/mutate.rs"]
mod mutate;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_process::BrokerProcess;
use bytes::Bytes;
use common::{create_topic, fetch_all, produce, record_batch, RawClient};
use corpus::{Seed, FUZZ_TOPIC};
use mutate::{mutated_frame, SplitMix64};

/// How long a worker waits for the first byte of an answer before it gives up on the
/// connection (acks=0, a frame announcing more bytes than it has, a long poll).
const ANSWER_WAIT: Duration = Duration::from_millis(250);
/// How long the rest of an answer may take once it has started.
const ANSWER_BODY_WAIT: Duration = Duration::from_secs(10);
/// Any answer larger than this is a broker bug (requests are a few KiB).
const ANSWER_BYTES_MAX: usize = 64 << 20;
/// Frames each worker remembers, to print when the run fails.
const RECENT_FRAMES: usize = 4;

struct Settings {
    frames: u64,
    seed: u64,
    workers: u64,
    rss_max_kib: u64,
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim().replace('_', "");
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text} is not a number")))
}

impl Settings {
    fn from_env() -> Settings {
        let clock_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(1);
        Settings {
            frames: env_u64("RUNNEL_FUZZ_FRAMES").unwrap_or(20_000),
            seed: env_u64("RUNNEL_FUZZ_SEED").unwrap_or(clock_seed),
            workers: env_u64("RUNNEL_FUZZ_WORKERS").unwrap_or(4).max(1),
            rss_max_kib: env_u64("RUNNEL_FUZZ_RSS_MAX_MIB").unwrap_or(512) * 1024,
        }
    }
}

/// How the broker took one frame.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Answered,
    Closed,
    Silent,
}

/// Reads one answer, or sees the connection end, or gives up after [`ANSWER_WAIT`].
fn await_answer(stream: &mut TcpStream) -> Result<Outcome, String> {
    let _ = stream.set_read_timeout(Some(ANSWER_WAIT));
    let mut size = [0u8; 4];
    match stream.read(&mut size[..1]) {
        Ok(0) => return Ok(Outcome::Closed),
        Ok(_) => {}
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Ok(Outcome::Silent)
        }
        Err(_) => return Ok(Outcome::Closed),
    }
    let _ = stream.set_read_timeout(Some(ANSWER_BODY_WAIT));
    if stream.read_exact(&mut size[1..]).is_err() {
        return Ok(Outcome::Closed);
    }
    let length = i32::from_be_bytes(size);
    if length < 0 || length as usize > ANSWER_BYTES_MAX {
        return Err(format!("the broker answered with a frame size of {length}"));
    }
    let mut body = vec![0u8; length as usize];
    match stream.read_exact(&mut body) {
        Ok(()) => Ok(Outcome::Answered),
        Err(_) => Ok(Outcome::Closed),
    }
}

#[derive(Default)]
struct Counts {
    frames: AtomicU64,
    answered: AtomicU64,
    closed: AtomicU64,
    silent: AtomicU64,
    connections: AtomicU64,
}

/// One worker: `frames` mutated frames over as many connections as the broker's closes need.
/// Returns its last frames, for the failure report.
fn run_worker(
    addr: SocketAddr,
    seeds: &[Seed],
    mut rng: SplitMix64,
    frames: u64,
    counts: &Counts,
    stop: &AtomicBool,
) -> Result<VecDeque<Vec<u8>>, String> {
    let mut recent = VecDeque::with_capacity(RECENT_FRAMES);
    let mut connection: Option<TcpStream> = None;
    for _ in 0..frames {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let index = rng.below(seeds.len());
        let mutated = mutated_frame(&mut rng, seeds, index);
        if recent.len() == RECENT_FRAMES {
            recent.pop_front();
        }
        recent.push_back(mutated.bytes.clone());
        let stream = match &mut connection {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
                let _ = stream.set_nodelay(true);
                let _ = stream.set_write_timeout(Some(ANSWER_BODY_WAIT));
                counts.connections.fetch_add(1, Ordering::Relaxed);
                connection.insert(stream)
            }
        };
        counts.frames.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(&mutated.bytes).is_err() {
            // The broker closed this connection after an earlier frame.
            counts.closed.fetch_add(1, Ordering::Relaxed);
            connection = None;
            continue;
        }
        if mutated.announces_more {
            // Either leave the frame stalled and go, or let the next frame's bytes finish it.
            if rng.chance(50) {
                connection = None;
            }
            continue;
        }
        match await_answer(stream)? {
            Outcome::Answered => counts.answered.fetch_add(1, Ordering::Relaxed),
            Outcome::Closed => {
                connection = None;
                counts.closed.fetch_add(1, Ordering::Relaxed)
            }
            Outcome::Silent => {
                connection = None;
                counts.silent.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
    Ok(recent)
}

/// Every seed, unmutated, is taken by the broker without closing the connection.
fn assert_seeds_are_valid(addr: SocketAddr, seeds: &[Seed]) {
    for seed in seeds {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let mut bytes = (seed.frame.len() as i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&seed.frame);
        stream.write_all(&bytes).expect("write");
        let outcome = await_answer(&mut stream).expect("a sane answer");
        assert_ne!(
            outcome,
            Outcome::Closed,
            "the seed {:?} v{} is not a valid request",
            seed.api,
            seed.version
        );
    }
}

/// What the broker acknowledged before the run.
struct Acknowledged {
    topic: String,
    high_watermark: i64,
    records: Bytes,
}

fn produce_acknowledged(broker: &BrokerProcess, seed: u64) -> Acknowledged {
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(create_topic(&mut client, FUZZ_TOPIC, 2, &[]), 0);
    let topic = format!("acknowledged-before-the-fuzz-{seed:016x}");
    // Kept whatever its age: the records' timestamps are from 2023, and time-based retention
    // would otherwise delete them once a long run passes `log.retention.check.interval.ms`.
    assert_eq!(
        create_topic(&mut client, &topic, 1, &[("retention.ms", "-1")]),
        0
    );
    for batch in 0..10 {
        let (error, base_offset) = produce(&mut client, &topic, 0, record_batch(10, 100));
        assert_eq!((error, base_offset), (0, batch * 10));
    }
    let (error, high_watermark, records) = fetch_all(&mut client, &topic);
    assert_eq!((error, high_watermark), (0, 100));
    Acknowledged {
        topic,
        high_watermark,
        records,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn mutated_frames_of_every_api_never_crash_the_broker_or_lose_acknowledged_data() {
    let settings = Settings::from_env();
    eprintln!(
        "frame_fuzz: seed {:#x}, {} frames, {} workers (replay: RUNNEL_FUZZ_SEED={:#x} \
         RUNNEL_FUZZ_WORKERS={} RUNNEL_FUZZ_FRAMES={})",
        settings.seed,
        settings.frames,
        settings.workers,
        settings.seed,
        settings.workers,
        settings.frames
    );
    // Mutated frames create real state with mutated names, as any client may: partitions
    // (CreateTopics, CreatePartitions) and consumer groups with members (JoinGroup). Kafka
    // bounds neither the number of groups nor their lifetime beyond these settings, so the run
    // bounds them as an operator would: `max.broker.partitions` caps partitions; members live at
    // most `group.max.session.timeout.ms` without heartbeats, and empty groups without offsets
    // are removed at every `offsets.retention.check.interval.ms` (Kafka's group cleanup).
    let mut broker = BrokerProcess::start(&[
        ("max.broker.partitions", "2000"),
        ("group.max.session.timeout.ms", "10000"),
        ("offsets.retention.check.interval.ms", "5000"),
        ("auto.create.topics.enable", "false"),
        ("group.initial.rebalance.delay.ms", "0"),
    ]);
    let acknowledged = produce_acknowledged(&broker, settings.seed);
    let seeds = Arc::new(corpus::seeds(&record_batch(3, 20)));
    assert_seeds_are_valid(broker.addr, &seeds);

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..settings.workers)
        .map(|worker| {
            let frames = settings.frames / settings.workers
                + u64::from(worker < settings.frames % settings.workers);
            let rng = SplitMix64::new(settings.seed ^ worker.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let (seeds, counts, stop) = (seeds.clone(), counts.clone(), stop.clone());
            let addr = broker.addr;
            std::thread::spawn(move || run_worker(addr, &seeds, rng, frames, &counts, &stop))
        })
        .collect();

    // Watch the process while the workers run: alive, and its resident set.
    let mut rss_peak_kib = 0;
    let mut died = false;
    while !workers.iter().all(|worker| worker.is_finished()) {
        if !broker.is_alive() {
            died = true;
            stop.store(true, Ordering::Relaxed);
            break;
        }
        rss_peak_kib = rss_peak_kib.max(broker.status_kib("VmRSS").unwrap_or(0));
        if rss_peak_kib > settings.rss_max_kib {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut recent_frames = Vec::new();
    let mut worker_errors = Vec::new();
    for (worker, handle) in workers.into_iter().enumerate() {
        match handle.join().expect("worker thread") {
            Ok(recent) => recent_frames.push((worker, recent)),
            Err(error) => worker_errors.push(format!("worker {worker}: {error}")),
        }
    }
    let elapsed = started.elapsed();
    let frames = counts.frames.load(Ordering::Relaxed);
    let hwm_kib = broker.status_kib("VmHWM").unwrap_or(0);
    let anon_kib = broker.status_kib("RssAnon").unwrap_or(0);
    let file_kib = broker.status_kib("RssFile").unwrap_or(0);
    eprintln!(
        "frame_fuzz: {frames} frames in {:.1} s ({:.0} frames/s) over {} connections: \
         {} answered, {} closed by the broker, {} silent; peak VmRSS {} MiB, VmHWM {} MiB \
         (at the end RssAnon {} MiB, RssFile {} MiB)",
        elapsed.as_secs_f64(),
        frames as f64 / elapsed.as_secs_f64().max(1e-9),
        counts.connections.load(Ordering::Relaxed),
        counts.answered.load(Ordering::Relaxed),
        counts.closed.load(Ordering::Relaxed),
        counts.silent.load(Ordering::Relaxed),
        rss_peak_kib / 1024,
        hwm_kib / 1024,
        anon_kib / 1024,
        file_kib / 1024
    );

    let alive = !died && broker.is_alive();
    let exit_status = broker.exit_status();
    let replay = format!(
        "replay with RUNNEL_FUZZ_SEED={:#x} RUNNEL_FUZZ_WORKERS={} RUNNEL_FUZZ_FRAMES={}",
        settings.seed, settings.workers, settings.frames
    );
    let report = |what: &str| {
        let mut text =
            format!("{what}; {replay}\nlast frames per worker (hex, size prefix first):");
        for (worker, recent) in &recent_frames {
            for frame in recent {
                text.push_str(&format!("\n  worker {worker}: {}", hex(frame)));
            }
        }
        // The data directory goes with the broker: keep its log where the failure names it.
        let kept = std::env::temp_dir().join(format!("frame_fuzz-{:x}.log", settings.seed));
        if std::fs::copy(broker.log_path(), &kept).is_ok() {
            text.push_str(&format!("\nbroker log kept at {}", kept.display()));
        }
        text.push_str("\nfatal log lines:\n");
        text.push_str(&broker.fatal_log_lines().join("\n"));
        let log = broker.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        text.push_str("\nlog tail:\n");
        text.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        text
    };
    assert!(
        alive,
        "{}",
        report(&format!("the broker died: {exit_status:?}"))
    );
    assert_eq!(
        broker.fatal_log_lines(),
        Vec::<String>::new(),
        "{}",
        report("fatal log lines")
    );
    assert!(
        rss_peak_kib.max(hwm_kib) <= settings.rss_max_kib,
        "{}",
        report(&format!(
            "resident set {} KiB above the bound {} KiB",
            rss_peak_kib.max(hwm_kib),
            settings.rss_max_kib
        ))
    );
    assert!(
        worker_errors.is_empty(),
        "{}",
        report(&worker_errors.join("; "))
    );
    assert_eq!(frames, settings.frames, "every frame was sent");

    let mut client = RawClient::connect(broker.addr);
    let (error, high_watermark, records) = fetch_all(&mut client, &acknowledged.topic);
    assert_eq!(
        (error, high_watermark),
        (0, acknowledged.high_watermark),
        "{}",
        report("the acknowledged topic changed")
    );
    assert!(
        records == acknowledged.records,
        "{}",
        report("the acknowledged records changed")
    );
}
