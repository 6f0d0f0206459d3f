//! `runnel bench floor`: the least CPU a durable ingest can cost on this machine, to read the
//! broker's CPU per GB against in the same run.
//!
//! A sender thread streams `--total-bytes` over loopback TCP in writes of `--request-bytes`
//! (the size of the broker's produce requests). The receiving thread reads each request
//! straight into a 4096-aligned buffer from a small reused pool, writes it to a file in `--dir`
//! with `O_DIRECT` and calls `fdatasync` before reading the next (or, with `--sync-bytes N`,
//! once at least N bytes arrived since the last one: the cadence of a broker's group commit,
//! which makes many requests durable with one fsync): the work a broker cannot avoid
//! (receive, write, make durable), with no parsing, no copy and no page cache. Where the
//! file system refuses `O_DIRECT` (`EINVAL`, e.g. tmpfs) it writes through the page cache
//! instead and says so. The figure is the receiving thread's CPU (`RUSAGE_THREAD`, user and
//! system) per GB received; the sender's CPU is not counted, as the producer's is not counted
//! in the broker's figure. There are no responses: the floor's receiver sends nothing back.
//!
//! Latencies in the summary are one request's write + `fdatasync`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::cpu::{self, GB};
use super::produce::payload_pool;
use super::stats::{report_with, Counters, Figures, Latencies};

/// O_DIRECT's alignment for buffer addresses, file offsets and lengths (the largest logical
/// block size in common use).
const ALIGN: usize = 4096;
/// Buffers in the receive pool, reused in turn.
const POOL_BUFFERS: usize = 4;
/// A bound on one request, as the broker bounds its frames.
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// A zero-filled buffer of `len` bytes at a 4096-aligned address.
struct AlignedBuffer {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBuffer {
    fn new(len: usize) -> anyhow::Result<AlignedBuffer> {
        let layout = std::alloc::Layout::from_size_align(len.max(ALIGN), ALIGN)
            .context("aligned buffer layout")?;
        // SAFETY: the layout's size is non-zero (at least ALIGN).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(ptr).context("allocate an aligned buffer")?;
        Ok(AlignedBuffer { ptr, layout })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `layout.size()` initialised (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this same layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// How the floor writes: O_DIRECT, or through the page cache because O_DIRECT was refused.
struct Target {
    file: File,
    direct: bool,
    fallback: Option<String>,
}

fn open(path: &Path, direct: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).write(true).truncate(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    options.open(path)
}

impl Target {
    fn open(path: &Path) -> anyhow::Result<Target> {
        match open(path, true) {
            Ok(file) => Ok(Target {
                file,
                direct: true,
                fallback: None,
            }),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Target::buffered(
                path,
                format!("O_DIRECT refused by open ({error}): buffered write + fdatasync"),
            ),
            Err(error) => Err(error).with_context(|| format!("create {}", path.display())),
        }
    }

    fn buffered(path: &Path, reason: String) -> anyhow::Result<Target> {
        let file = open(path, false).with_context(|| format!("create {}", path.display()))?;
        Ok(Target {
            file,
            direct: false,
            fallback: Some(reason),
        })
    }

    fn method(&self) -> &'static str {
        if self.direct {
            "o_direct"
        } else {
            "buffered"
        }
    }
}

/// Receives `total_bytes` in requests of `request_bytes` and makes each durable in `dir`;
/// `buffered` skips O_DIRECT, to compare the two.
pub fn floor(
    dir: &Path,
    total_bytes: u64,
    request_bytes: usize,
    sync_bytes: u64,
    buffered: bool,
    json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_REQUEST_BYTES).contains(&request_bytes),
        "--request-bytes must be 1..={MAX_REQUEST_BYTES}"
    );
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("runnel-bench-floor.tmp");
    let mut target = if buffered {
        Target::buffered(&path, "--buffered: buffered write + fdatasync".to_string())?
    } else {
        Target::open(&path)?
    };
    // A direct write's length is rounded up to the alignment; the pad is reported.
    let padded_len = request_bytes.div_ceil(ALIGN) * ALIGN;
    let mut pool = (0..POOL_BUFFERS)
        .map(|_| AlignedBuffer::new(padded_len))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let listener = TcpListener::bind("127.0.0.1:0").context("bind loopback")?;
    let address = listener.local_addr().context("local address")?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stream = TcpStream::connect(address)?;
        let pool = payload_pool(request_bytes, 0x5eed);
        let mut sent = 0u64;
        let mut index = 0usize;
        while sent < total_bytes {
            let size = request_bytes.min((total_bytes - sent) as usize);
            let start = (index * 7) % request_bytes;
            stream.write_all(&pool[start..start + size])?;
            sent += size as u64;
            index += 1;
        }
        Ok(())
    });
    let (mut stream, _) = listener.accept().context("accept")?;

    let counters = Counters::default();
    let latencies = Latencies::new();
    let mut padded_bytes = 0u64;
    let cpu_before = cpu::this_thread()?;
    let started = Instant::now();
    let mut received = 0u64;
    let mut unsynced = 0u64;
    let mut syncs = 0u64;
    let mut index = 0usize;
    while received < total_bytes {
        let size = request_bytes.min((total_bytes - received) as usize);
        let buffer = &mut pool[index % POOL_BUFFERS];
        index += 1;
        stream
            .read_exact(&mut buffer.as_mut_slice()[..size])
            .context("receive a request")?;
        let sync_started = Instant::now();
        loop {
            let len = if target.direct {
                size.div_ceil(ALIGN) * ALIGN
            } else {
                size
            };
            match target.file.write_all(&buffer.as_slice()[..len]) {
                Ok(()) => {
                    padded_bytes += (len - size) as u64;
                    break;
                }
                // Some file systems take the O_DIRECT open and refuse the write. Nothing was
                // written yet (this is the first request), so start over buffered.
                Err(error)
                    if target.direct
                        && received == 0
                        && error.raw_os_error() == Some(libc::EINVAL) =>
                {
                    target = Target::buffered(
                        &path,
                        format!("O_DIRECT write refused ({error}): buffered write + fdatasync"),
                    )?;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error).context("write"),
            }
        }
        received += size as u64;
        unsynced += size as u64;
        if unsynced >= sync_bytes || received >= total_bytes {
            target.file.sync_data().context("fdatasync")?;
            syncs += 1;
            unsynced = 0;
        }
        latencies.record(sync_started.elapsed());
        counters.add(1, size as u64);
    }
    let elapsed = started.elapsed();
    let cpu = cpu::this_thread()?.since(cpu_before);
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))?
        .context("send")?;
    let method = target.method();
    let fallback = target.fallback.take();
    drop(target);
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;

    let gb = (received as f64 / GB).max(f64::EPSILON);
    let mut figures = Figures::default();
    figures.add("method", method);
    figures.add("fallback", fallback.clone());
    figures.add("requests", index as u64);
    figures.add("fdatasyncs", syncs);
    figures.add("padded_bytes", padded_bytes);
    figures.add("receiver_cpu_user_s", cpu.user_s);
    figures.add("receiver_cpu_system_s", cpu.system_s);
    figures.add("receiver_cpu_s", cpu.total_s());
    figures.add("cpu_user_s_per_gb", cpu.user_s / gb);
    figures.add("cpu_system_s_per_gb", cpu.system_s / gb);
    figures.add("cpu_s_per_gb", cpu.total_s() / gb);
    figures.text = format!(
        "; {method}{}; receiving thread CPU-s per GB: {:.3} (user {:.3}, system {:.3}); latency \
         is one request's write + fdatasync",
        fallback.map_or(String::new(), |reason| format!(" ({reason})")),
        cpu.total_s() / gb,
        cpu.user_s / gb,
        cpu.system_s / gb,
    );
    let extra = json!({"total_bytes": total_bytes, "request_bytes": request_bytes,
                       "sync_bytes": sync_bytes, "dir": dir});
    report_with(
        "floor",
        json,
        &counters,
        elapsed,
        Some(&latencies),
        extra,
        figures,
    );
    Ok(())
}
