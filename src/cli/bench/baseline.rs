//! The machine's limits, measured the way the broker uses the machine, so that broker figures
//! can be read as a fraction of what the box allows in the same run.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::stats::{report, Counters, Latencies};

/// Sequential writes of `block_bytes` with `fdatasync` after each, `total_bytes` in all; the
/// latencies are one block's write + fdatasync.
pub fn disk(dir: &Path, total_bytes: u64, block_bytes: usize, json: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("runnel-bench-disk.tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let block: Vec<u8> = (0..block_bytes).map(|i| (i * 31 + 7) as u8).collect();
    let counters = Counters::default();
    let latencies = Latencies::new();
    let started = Instant::now();
    let mut written = 0u64;
    while written < total_bytes {
        let size = block.len().min((total_bytes - written) as usize);
        let block_started = Instant::now();
        file.write_all(&block[..size]).context("write")?;
        file.sync_data().context("fdatasync")?;
        latencies.record(block_started.elapsed());
        written += size as u64;
        counters.add(1, size as u64);
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    let extra = json!({"total_bytes": total_bytes, "block_bytes": block_bytes, "dir": dir});
    report("disk", json, &counters, elapsed, Some(&latencies), extra);
    Ok(())
}

/// Sends `total_bytes` over a loopback TCP connection in 1 MiB writes.
pub fn tcp(total_bytes: u64, json: bool) -> anyhow::Result<()> {
    const CHUNK_BYTES: usize = 1 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").context("bind loopback")?;
    let address = listener.local_addr().context("local address")?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stream = TcpStream::connect(address)?;
        let chunk = vec![0x5au8; CHUNK_BYTES];
        let mut sent = 0u64;
        while sent < total_bytes {
            let size = CHUNK_BYTES.min((total_bytes - sent) as usize);
            stream.write_all(&chunk[..size])?;
            sent += size as u64;
        }
        Ok(())
    });
    let (mut stream, _) = listener.accept().context("accept")?;
    let counters = Counters::default();
    let started = Instant::now();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = stream.read(&mut buffer).context("read")?;
        if read == 0 {
            break;
        }
        counters.add(0, read as u64);
    }
    let elapsed = started.elapsed();
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))?
        .context("send")?;
    report(
        "tcp",
        json,
        &counters,
        elapsed,
        None,
        json!({"total_bytes": total_bytes}),
    );
    Ok(())
}
