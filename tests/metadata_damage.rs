//! Metadata damage never deletes data, and one server per data directory (issue 11, items 3
//! and 6), through the real `runnel` binary on real data directories.
//!
//! Each test first gives a data directory topic data and a committed group offset, stops the
//! broker, then damages the directory and starts `runnel server` again. Kafka behaviours pinned:
//! a second process on a log directory fails to take `.lock` (`LogManager.lockLogDirs`); a
//! partition directory the metadata does not name is kept, never deleted at start (Kafka's
//! stray logs, KRaft `LogManager`); only a deletion the metadata log records removes topic data
//! (`RemoveTopicRecord`, then `LogManager.asyncDelete`'s `-delete` rename).
//!
//! Also here: a data directory whose metadata log Runnel wrote before the metadata quorum (the
//! single writer's format) is migrated at start with its records and its data, the old log
//! kept.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{wait_until, RawClient};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_metadata::MetadataRecord;
use runnel_protocol::record_batch;

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
const COMMITTED: i64 = 2;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A `runnel server` process, killed if the test ends without stopping it.
struct Server {
    child: Child,
    addr: SocketAddr,
    http: SocketAddr,
    stderr: PathBuf,
}

impl Server {
    fn spawn(data_dir: &Path, log_dir: &Path) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let stderr = log_dir.join(format!("server-{}.log", addr.port()));
        let child = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(["server", "--data-dir"])
            .arg(data_dir)
            .args([
                "--listen",
                &addr.to_string(),
                "--http-listen",
                &http.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .spawn()
            .expect("start runnel server");
        Server {
            child,
            addr,
            http,
            stderr,
        }
    }

    /// Starts a server and waits until it listens.
    fn start(data_dir: &Path, log_dir: &Path) -> Server {
        let mut server = Server::spawn(data_dir, log_dir);
        wait_until("the broker to listen", BOOT_TIMEOUT, || {
            if let Some(status) = server.child.try_wait().expect("wait") {
                panic!("the broker exited with {status}: {}", server.log());
            }
            TcpStream::connect(server.addr).is_ok()
        });
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the process to exit by itself.
    fn exit_status(&mut self) -> ExitStatus {
        let mut exit = None;
        wait_until("the broker to exit", BOOT_TIMEOUT, || {
            exit = self.child.try_wait().expect("wait");
            exit.is_some()
        });
        exit.expect("exited")
    }

    /// SIGTERM and a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("send SIGTERM");
        assert!(status.success());
        let status = self.exit_status();
        assert!(status.success(), "clean stop: {status}; {}", self.log());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server that must refuse to start; returns its stderr.
fn refused(data_dir: &Path, log_dir: &Path) -> String {
    let mut server = Server::spawn(data_dir, log_dir);
    let status = server.exit_status();
    let log = server.log();
    assert!(!status.success(), "the start was refused: {log}");
    log
}

fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the HTTP port");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: runnel\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

fn commit(client: &mut RawClient, offset: i64) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("billing")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(common::topic_name("orders"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let response: OffsetCommitResponse = client.request(ApiKey::OffsetCommit, 7, &request);
    response.topics[0].partitions[0].error_code
}

fn committed(client: &mut RawClient) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("billing")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(common::topic_name("orders"))
            .with_partition_indexes(vec![0])]));
    let mut offset = -1;
    wait_until("the committed offset to load", BOOT_TIMEOUT, || {
        let response: OffsetFetchResponse = client.request(ApiKey::OffsetFetch, 5, &request);
        offset = response.topics[0].partitions[0].committed_offset;
        response.error_code == 0 && response.topics[0].partitions[0].error_code == 0
    });
    offset
}

/// A stopped broker's data directory with topic `orders` (2 partitions, 3 records in
/// partition 0, a config override), a committed offset of group `billing`, and topic
/// `payments` created after the commit (so the metadata log has a record after
/// `__consumer_offsets`').
fn seeded() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let server = Server::start(&data, root.path());
    let mut client = RawClient::connect(server.addr);
    assert_eq!(
        common::create_topic(&mut client, "orders", 2, &[("retention.ms", "86400000")]),
        0
    );
    assert_eq!(
        common::produce(&mut client, "orders", 0, common::record_batch(3, 10)),
        (0, 0)
    );
    wait_until(
        "a commit once the coordinator has loaded",
        BOOT_TIMEOUT,
        || commit(&mut client, COMMITTED) == 0,
    );
    assert_eq!(common::create_topic(&mut client, "payments", 1, &[]), 0);
    drop(client);
    server.stop();
    (root, data)
}

/// Every file under the partition directories, with its bytes.
fn partition_files(data: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(data).expect("list") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        if !path.is_dir() || name.starts_with("__cluster_metadata") {
            continue;
        }
        for file in std::fs::read_dir(&path).expect("list partition") {
            let file = file.expect("entry").path();
            files.insert(file.clone(), std::fs::read(&file).expect("read"));
        }
    }
    files
}

fn metadata_segment(data: &Path) -> PathBuf {
    data.join("__cluster_metadata-0")
        .join("00000000000000000000.log")
}

/// Records and the committed offset are readable.
fn assert_data_served(server: &Server) {
    let mut client = RawClient::connect(server.addr);
    let (error, high_watermark, records) = common::fetch_all(&mut client, "orders");
    assert_eq!((error, high_watermark), (0, 3));
    assert!(!records.is_empty());
    assert_eq!(committed(&mut client), COMMITTED);
}

fn rebuild(data: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["metadata", "rebuild", "--data-dir"])
        .arg(data)
        .output()
        .expect("run runnel metadata rebuild");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "rebuild: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn a_deleted_metadata_log_refuses_the_start_and_rebuild_restores_topics_and_offsets() {
    let (root, data) = seeded();
    let before = partition_files(&data);
    assert!(before
        .keys()
        .any(|p| p.starts_with(data.join("__consumer_offsets-0"))));
    std::fs::remove_dir_all(data.join("__cluster_metadata-0")).expect("delete the metadata log");

    let log = refused(&data, root.path());
    assert!(
        log.contains("metadata log") && log.contains("missing or empty"),
        "{log}"
    );
    assert!(log.contains("runnel metadata rebuild --data-dir"), "{log}");
    assert_eq!(
        partition_files(&data),
        before,
        "every partition file intact"
    );

    let report = rebuild(&data);
    assert!(report.contains("topic orders: 2 partition(s)"), "{report}");
    assert!(report.contains("config overrides LOST"), "{report}");
    assert!(
        !report.contains("(new:"),
        "topic ids kept from partition.metadata: {report}"
    );
    let server = Server::start(&data, root.path());
    assert_data_served(&server);
    server.stop();
}

/// Rewrites `data`'s metadata log in the single writer's format, what Runnel wrote before the
/// metadata quorum (up to commit 609564a): one record batch per metadata record, offsets from
/// 0, no `quorum-state`. Its records are the ones the quorum's log holds (read with the
/// broker's own scan, which reads both formats); returns them.
fn rewrite_in_single_writer_format(data: &Path) -> Vec<MetadataRecord> {
    let dir = data.join("__cluster_metadata-0");
    let scan = runnel_broker::metadata_log::scan(&dir).expect("the quorum's log reads");
    let records: Vec<MetadataRecord> = scan.records.into_iter().map(|(_, r)| r).collect();
    let mut segment = Vec::new();
    for (offset, record) in records.iter().enumerate() {
        let value = Some(bytes::Bytes::from(record.encode()));
        let mut batch = record_batch::encode_internal_batch([(None, value)], 1_700_000_000_000);
        record_batch::set_base_offset(&mut batch, offset as i64);
        segment.extend_from_slice(&batch);
    }
    std::fs::remove_dir_all(&dir).expect("remove the quorum's log");
    std::fs::create_dir(&dir).expect("metadata dir");
    std::fs::write(dir.join("00000000000000000000.log"), &segment).expect("write the old log");
    records
}

#[test]
fn a_metadata_log_from_before_the_quorum_is_migrated_with_its_data_and_kept() {
    let (root, data) = seeded();
    let old_records = rewrite_in_single_writer_format(&data);
    assert!(old_records.len() >= 3, "{old_records:?}");
    let old_segment = std::fs::read(metadata_segment(&data)).expect("read the old log");
    let before = partition_files(&data);

    let server = Server::start(&data, root.path());
    assert_data_served(&server);
    let log = server.log();
    assert!(log.contains("migrating it"), "{log}");
    // The new log holds the same records in the same order, in the quorum's format.
    let metadata = data.join("__cluster_metadata-0");
    assert!(metadata.join("quorum-state").is_file());
    let migrated = runnel_broker::metadata_log::scan(&metadata).expect("the new log reads");
    let migrated: Vec<MetadataRecord> = migrated.records.into_iter().map(|(_, r)| r).collect();
    assert_eq!(migrated[..old_records.len()], old_records[..]);
    // After them, only this start's registration of the broker (its new port).
    assert!(
        migrated[old_records.len()..]
            .iter()
            .all(|r| matches!(r, MetadataRecord::RegisterBroker { .. })),
        "{migrated:?}"
    );
    // The old log is kept as it was, under a name the broker ignores.
    let kept: Vec<PathBuf> = std::fs::read_dir(&data)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.to_string_lossy().ends_with("-single-writer"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read(kept[0].join("00000000000000000000.log")).expect("kept"),
        old_segment
    );
    assert!(!data.join(".metadata-staging").exists());

    // The migrated quorum takes changes, and the next start is an ordinary one.
    let mut client = RawClient::connect(server.addr);
    assert_eq!(common::create_topic(&mut client, "after", 1, &[]), 0);
    drop(client);
    server.stop();
    let segments = |files: BTreeMap<PathBuf, Vec<u8>>| {
        let mut files = files;
        files.retain(|path, _| path.extension().is_some_and(|e| e == "log"));
        files
    };
    let mut now = segments(partition_files(&data));
    now.retain(|path, _| before.contains_key(path));
    assert_eq!(now, segments(before), "every partition segment as it was");
    let server = Server::start(&data, root.path());
    assert!(!server.log().contains("migrating"), "{}", server.log());
    assert_data_served(&server);
    let mut client = RawClient::connect(server.addr);
    assert_eq!(
        common::create_topic(&mut client, "after", 1, &[]),
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    drop(client);
    server.stop();
}

#[test]
fn a_damaged_metadata_log_refuses_the_start_but_a_torn_tail_does_not() {
    let (root, data) = seeded();
    let before = partition_files(&data);
    let segment = metadata_segment(&data);
    let original = std::fs::read(&segment).expect("read the metadata log");

    // A torn last write: the first 40 bytes of a batch appended, as a crash during the write
    // leaves it.
    let mut last_batch_start = 0;
    let mut position = 0;
    while position + 12 <= original.len() {
        last_batch_start = position;
        let length = i32::from_be_bytes(original[position + 8..position + 12].try_into().unwrap());
        position += 12 + length as usize;
    }
    let mut torn = original.clone();
    torn.extend_from_slice(&original[last_batch_start..last_batch_start + 40]);
    std::fs::write(&segment, &torn).expect("tear the tail");
    let server = Server::start(&data, root.path());
    assert_data_served(&server);
    server.stop();
    let before = {
        let mut after_restart = partition_files(&data);
        after_restart.retain(|path, _| before.contains_key(path));
        after_restart
    };

    // Garbage over the first record (topic orders): intact records follow it.
    let mut damaged = std::fs::read(&segment).expect("read the metadata log");
    damaged[40..56].copy_from_slice(b"garbage garbage!");
    std::fs::write(&segment, &damaged).expect("damage the metadata log");
    let log = refused(&data, root.path());
    assert!(log.contains("is damage, not the torn tail"), "{log}");
    assert!(log.contains("runnel metadata rebuild"), "{log}");
    let mut now = partition_files(&data);
    now.retain(|path, _| before.contains_key(path));
    assert_eq!(now, before, "every partition file intact");
    assert!(data.join("orders-0").is_dir() && data.join("__consumer_offsets-0").is_dir());
    assert_eq!(
        std::fs::read(&segment).expect("read"),
        damaged,
        "the log left as found"
    );

    // The rebuild keeps what it can and the data is served again.
    let report = rebuild(&data);
    assert!(report.contains("damaged"), "{report}");
    let server = Server::start(&data, root.path());
    assert_data_served(&server);
    server.stop();
}

#[test]
fn stray_partition_dirs_are_kept_and_reported_and_only_recorded_deletions_remove_data() {
    let (root, data) = seeded();
    // A directory no topic names, holding a copy of real data.
    let stray = data.join("ghost-0");
    std::fs::create_dir(&stray).expect("mkdir");
    for file in std::fs::read_dir(data.join("orders-0")).expect("list") {
        let file = file.expect("entry").path();
        std::fs::copy(&file, stray.join(file.file_name().expect("name"))).expect("copy");
    }
    std::fs::remove_file(stray.join("partition.metadata")).expect("no topic id");
    let stray_files = partition_files(&data)
        .into_iter()
        .filter(|(path, _)| path.starts_with(&stray))
        .collect::<BTreeMap<_, _>>();

    // Topic `payments` is deleted; its directory comes back (as if the broker had crashed
    // after the RemoveTopic record and before the removal), beside one of `payments-7`, a
    // partition it never had.
    let server = Server::start(&data, root.path());
    let payments_id = std::fs::read(data.join("payments-0").join("partition.metadata"))
        .expect("payments has a partition.metadata");
    let mut admin = RawClient::connect(server.addr);
    let deleted: kafka_protocol::messages::DeleteTopicsResponse = admin.request(
        ApiKey::DeleteTopics,
        4,
        &kafka_protocol::messages::DeleteTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topic_names(vec![common::topic_name("payments")]),
    );
    assert_eq!(deleted.responses[0].error_code, 0);
    assert!(!data.join("payments-0").exists());
    // The stray directory is not adopted by a new topic of its name.
    assert_ne!(common::create_topic(&mut admin, "ghost", 1, &[]), 0);
    drop(admin);
    server.stop();
    for name in ["payments-0", "payments-7"] {
        std::fs::create_dir(data.join(name)).expect("mkdir");
        std::fs::write(data.join(name).join("partition.metadata"), &payments_id).expect("write");
    }

    let server = Server::start(&data, root.path());
    assert_data_served(&server);
    let metrics = http_get(server.http, "/metrics");
    assert!(
        metrics.contains("\nrunnel_stray_partition_dirs 2\n"),
        "{metrics}"
    );
    let console = http_get(server.http, "/");
    assert!(console.contains("Stray partition directories"), "{console}");
    assert!(
        console.contains("ghost-0") && console.contains("payments-7"),
        "{console}"
    );
    server.stop();
    let log = std::fs::read_dir(root.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("server-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.contains("WARN") && log.contains("ghost-0, payments-7"),
        "{log}"
    );

    let kept = partition_files(&data)
        .into_iter()
        .filter(|(path, _)| path.starts_with(&stray))
        .collect::<BTreeMap<_, _>>();
    assert_eq!(kept, stray_files, "the stray directory is kept as it was");
    assert!(
        data.join("payments-7").is_dir(),
        "a partition the deleted topic never had"
    );
    assert!(
        !data.join("payments-0").exists(),
        "the recorded deletion is finished"
    );
}

#[test]
fn a_deleted_meta_properties_with_data_refuses_the_start() {
    let (root, data) = seeded();
    let before = partition_files(&data);
    std::fs::remove_file(data.join("meta.properties")).expect("delete meta.properties");
    let log = refused(&data, root.path());
    assert!(log.contains("meta.properties is missing"), "{log}");
    assert!(log.contains("runnel metadata rebuild"), "{log}");
    assert!(
        !data.join("meta.properties").exists(),
        "no new cluster id written"
    );
    assert_eq!(partition_files(&data), before);

    let report = rebuild(&data);
    assert!(report.contains("wrote a new meta.properties"), "{report}");
    assert!(
        report.contains("retention.ms=86400000"),
        "configs kept from the log: {report}"
    );
    let server = Server::start(&data, root.path());
    assert_data_served(&server);
    server.stop();
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_at_once_and_the_first_serves_on() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let first = Server::start(&data, root.path());
    let log = refused(&data, root.path());
    assert!(
        log.contains(&format!("data directory {} is in use", data.display())),
        "{log}"
    );
    let mut client = RawClient::connect(first.addr);
    assert_eq!(common::create_topic(&mut client, "after", 1, &[]), 0);
    assert_eq!(
        common::produce(&mut client, "after", 0, common::record_batch(2, 10)),
        (0, 0)
    );
    drop(client);
    first.stop();
    // Once the first has stopped, the directory is free again.
    Server::start(&data, root.path()).stop();
}

#[test]
fn a_data_dir_that_is_a_file_or_not_writable_is_named_in_one_line() {
    let root = tempfile::tempdir().expect("tempdir");
    let file = root.path().join("data");
    std::fs::write(&file, b"not a directory").expect("write");
    let log = refused(&file, root.path());
    assert_eq!(log.lines().count(), 1, "one line: {log}");
    assert_eq!(log.matches(&file.display().to_string()).count(), 1, "{log}");
    assert!(log.contains("is a file, not a directory"), "{log}");

    // Not writable: a read-only directory; as root (who writes anywhere), run as nobody.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let read_only = root.path().join("read-only");
    std::fs::create_dir(&read_only).expect("mkdir");
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let is_root = runs_as_root();
    let mut command = if is_root {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        command.arg(env!("CARGO_BIN_EXE_runnel"));
        command
    } else {
        Command::new(env!("CARGO_BIN_EXE_runnel"))
    };
    let output = command
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&read_only)
        .output()
        .expect("run the server");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{log}");
    assert_eq!(log.lines().count(), 1, "one line: {log}");
    assert!(
        log.contains(&format!(
            "data directory {} is not writable",
            read_only.display()
        )),
        "{log}"
    );
}

/// Whether this process runs as root (its effective uid in `/proc/self/status`).
fn runs_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A metadata log purged below a snapshot, as the quorum leaves it once snapshots replace old
/// entries: the rebuild starts from the newest snapshot that reads (here the only record of
/// topic `orders`, its config and the group's `__consumer_offsets`), skips a newer one that
/// does not read, adds the log's record after the snapshot, and the data is served.
#[test]
fn rebuild_starts_from_the_newest_snapshot_that_reads() {
    let (root, data) = seeded();
    let dir = data.join("__cluster_metadata-0");
    let scan = runnel_broker::metadata_log::scan(&dir).expect("the quorum's log reads");
    // The snapshot holds every record but the last (topic `payments`): that one stays in the
    // log, after the snapshot's index.
    let (last_offset, _) = *scan.records.last().expect("records");
    let image = scan
        .records
        .iter()
        .filter(|(offset, _)| *offset < last_offset)
        .fold(
            runnel_metadata::MetadataImage::default(),
            |image, (_, record)| image.apply(record),
        );
    assert!(image.topic("orders").is_some() && image.topic("payments").is_none());
    let index = u64::try_from(last_offset - 1).expect("index");
    let meta: runnel_controller::types::SnapshotMeta = serde_json::from_value(serde_json::json!({
        "last_log_id": {"leader_id": 1, "index": index},
        "last_membership": {"log_id": null, "membership": {"configs": [[1]], "nodes": {"1": {"addr": "127.0.0.1:1"}}}},
        "snapshot_id": format!("{index}-1"),
    }))
    .expect("a snapshot meta");
    let bytes = runnel_controller::snapshot::encode(&meta, &image).expect("encode");
    std::fs::write(
        dir.join(format!("{index:020}-{:010}.checkpoint", 1)),
        &bytes,
    )
    .expect("write");
    // A newer snapshot whose bytes are damaged.
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(
        dir.join(format!("{:020}-{:010}.checkpoint", index + 1, 1)),
        &damaged,
    )
    .expect("write");
    // The log's entries up to the snapshot are gone, as after a purge: only the snapshot
    // holds topic `orders` and its config, the log only the entry after it.
    let segment = metadata_segment(&data);
    let log = std::fs::read(&segment).expect("read");
    let mut kept = Vec::new();
    let mut position = 0;
    while position + 12 <= log.len() {
        let base = i64::from_be_bytes(log[position..position + 8].try_into().expect("offset"));
        let length = i32::from_be_bytes(log[position + 8..position + 12].try_into().expect("len"));
        let end = position + 12 + length as usize;
        if base == last_offset {
            kept.extend_from_slice(&log[position..end]);
        }
        position = end;
    }
    std::fs::write(&segment, &kept).expect("replace the log");

    let report = rebuild(&data);
    assert!(report.contains("does not read"), "{report}");
    assert!(
        report.contains(&format!(
            "started from snapshot {}",
            dir.join(format!("{index:020}-{:010}.checkpoint", 1))
                .display()
        )),
        "{report}"
    );
    assert!(
        report.contains("1 record(s) of the old metadata log were kept"),
        "{report}"
    );
    assert!(report.contains("topic orders: 2 partition(s)"), "{report}");
    assert!(
        report.contains("configs retention.ms=86400000"),
        "config overrides kept from the snapshot: {report}"
    );
    let server = Server::start(&data, root.path());
    assert_data_served(&server);
    server.stop();
}
