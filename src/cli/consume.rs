//! `runnel consume`: kcat -C for Runnel (or any Kafka cluster). Reads a topic by assignment
//! (every partition, or `-p`) from `-o` (beginning, end, stored, an offset, or `-N` for the
//! last N records), or as a member of group `-g` (subscribed, committing exactly what it
//! has printed: per partition the last printed offset + 1). Each record is printed with `-f` (kcat's format: `%t` topic, `%p` partition,
//! `%o` offset, `%k` key, `%s` value, `%K`/`%S` their lengths, `%T` timestamp in ms, `%h`
//! headers as k=v,..., `%%`, and `\n`, `\t`, `\\`). `-e` exits once every partition is read
//! to its end; `-c` after that many records; SIGINT or SIGTERM after closing the consumer
//! cleanly (a group member commits and leaves its group).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use runnel_client::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use runnel_client::rdkafka::error::KafkaError;
use runnel_client::rdkafka::message::{BorrowedMessage, Headers, Message};
use runnel_client::rdkafka::types::RDKafkaErrorCode;
use runnel_client::rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use runnel_client::ClientError;

use super::cluster::{is_connection_failure, log_librdkafka, ClusterArgs};
use runnel_client::rdkafka::config::RDKafkaLogLevel;

/// How long one poll waits before the output is flushed and the loop checks its ends.
const POLL_WAIT: Duration = Duration::from_millis(100);

#[derive(Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic to read.
    topic: String,
    /// Read only this partition [default: every partition].
    #[arg(short, long, conflicts_with = "group")]
    partition: Option<i32>,
    /// Where to start: beginning, end, stored, an offset, or -N (the last N records).
    #[arg(short, long, default_value = "beginning", allow_hyphen_values = true)]
    offset: String,
    /// Read as a member of this consumer group (offsets committed as records are printed).
    #[arg(short, long)]
    group: Option<String>,
    /// The output format for each record.
    #[arg(short, long, default_value = "%s\\n")]
    format: String,
    /// Exit once every partition has been read to its end.
    #[arg(short = 'e', long)]
    exit_at_end: bool,
    /// Exit after this many records.
    #[arg(short, long)]
    count: Option<u64>,
}

/// librdkafka's context for this consumer: reaching a partition's end is how `-e` works, not
/// an error to log, and a failing connection is the probe's or the call's error; other client
/// errors are logged as librdkafka reports them.
struct QuietEof;

impl ClientContext for QuietEof {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let at_end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !at_end && !is_connection_failure(&error) {
            tracing::error!(%error, reason, "librdkafka");
        }
    }
}

impl ConsumerContext for QuietEof {}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let start = parse_offset(&args.offset)?;
    let format = Format::parse(&args.format)?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.cluster.bootstrap)
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", auto_offset_reset(start));
    match &args.group {
        // Offsets are stored by hand once their records are written out (see `Progress`);
        // librdkafka commits what is stored, every auto.commit.interval.ms and on close.
        Some(group) => config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false"),
        // librdkafka wants a group id even when no group protocol is used.
        None => config
            .set("group.id", "runnel-consume")
            .set("enable.auto.commit", "false"),
    };
    args.cluster.apply(&mut config)?;
    let consumer: BaseConsumer<QuietEof> = config.create_with_context(QuietEof)?;
    args.cluster.probe(consumer.client())?;

    if args.group.is_some() {
        consumer.subscribe(&[&args.topic])?;
    } else {
        let partitions = match args.partition {
            Some(partition) => vec![partition],
            None => partitions_of(&consumer, &args.topic, args.cluster.timeout())?,
        };
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            assignment.add_partition_offset(&args.topic, partition, start)?;
        }
        consumer.assign(&assignment)?;
    }

    let mut progress = Progress {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        printed: BTreeMap::new(),
        in_group: args.group.is_some(),
        flushed_at: Instant::now(),
    };
    let outcome = read(&consumer, &args, &format, &mut progress);
    // What reached the reader is stored even when the output failed later; a closed pipe ends
    // the command quietly (see `output`), after the commit below.
    let flushed = progress.flush(&consumer);
    if args.group.is_some() {
        commit_stored(&consumer)?;
    }
    outcome.and(flushed)
}

/// The output and what of it has been printed: per partition the offset after the last
/// record written, stored for the group's commit once the output is flushed, so that a group
/// member commits exactly what it printed (as kcat and Kafka's console consumer commit
/// last printed offset + 1), never records read ahead but not shown.
struct Progress<W: Write> {
    out: std::io::BufWriter<W>,
    /// (topic, partition) → next offset, for records written but not yet flushed.
    printed: BTreeMap<(String, i32), i64>,
    in_group: bool,
    flushed_at: Instant,
}

impl<W: Write> Progress<W> {
    fn flush(&mut self, consumer: &BaseConsumer<QuietEof>) -> anyhow::Result<()> {
        self.out.flush().context("write standard output")?;
        self.flushed_at = Instant::now();
        if !self.in_group || self.printed.is_empty() {
            return Ok(());
        }
        let mut stored = TopicPartitionList::new();
        for ((topic, partition), next) in std::mem::take(&mut self.printed) {
            stored.add_partition_offset(&topic, partition, Offset::Offset(next))?;
        }
        match consumer.store_offsets(&stored) {
            // A partition revoked meanwhile cannot be stored; its new owner reads it again.
            Ok(()) | Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// Polls and prints until `-c`, `-e`, a signal, or an error.
fn read<W: Write>(
    consumer: &BaseConsumer<QuietEof>,
    args: &ConsumeArgs,
    format: &Format,
    progress: &mut Progress<W>,
) -> anyhow::Result<()> {
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut count: u64 = 0;
    let interrupted = interrupt_flag();
    loop {
        if args.count.is_some_and(|wanted| count >= wanted)
            || interrupted.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        match consumer.poll(POLL_WAIT) {
            None => progress.flush(consumer)?,
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                format.write(&mut progress.out, &message)?;
                progress.printed.insert(
                    (message.topic().to_string(), message.partition()),
                    message.offset() + 1,
                );
                count += 1;
                if progress.flushed_at.elapsed() >= POLL_WAIT {
                    progress.flush(consumer)?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => return Err(error).context("read records"),
        }
        if args.exit_at_end {
            let assigned = consumer.assignment()?;
            let assigned_count = assigned.count();
            if assigned_count > 0
                && at_end.len() >= assigned_count
                && all_at_end(&assigned, &at_end)
            {
                return Ok(());
            }
        }
    }
}

/// Commits the stored offsets now, synchronously, so that the command's exit means they are
/// committed (closing commits them too, but reports nothing).
fn commit_stored(consumer: &BaseConsumer<QuietEof>) -> anyhow::Result<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit: nothing to do.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(error) => Err(ClientError::from(error)).context("commit the printed records' offsets"),
    }
}

/// A flag raised by SIGINT or SIGTERM, so that the loop ends and the consumer closes cleanly:
/// a group member commits what it printed and leaves its group at once (its partitions move
/// without waiting for its session to time out).
fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let flag = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&flag);
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut interrupt), Ok(mut terminate)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            raised.store(true, Ordering::Relaxed);
        });
    });
    flag
}

fn all_at_end(assigned: &TopicPartitionList, at_end: &HashSet<i32>) -> bool {
    assigned
        .elements()
        .iter()
        .all(|element| at_end.contains(&element.partition()))
}

fn partitions_of(
    consumer: &BaseConsumer<QuietEof>,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(ClientError::from)?;
    let Some(found) = metadata.topics().first() else {
        bail!("topic {topic}: no metadata");
    };
    if let Some(error) = found.error() {
        return Err(ClientError::Topic {
            topic: topic.to_string(),
            code: RDKafkaErrorCode::from(error),
        }
        .into());
    }
    Ok(found.partitions().iter().map(|p| p.id()).collect())
}

fn parse_offset(text: &str) -> anyhow::Result<Offset> {
    Ok(match text {
        "beginning" => Offset::Beginning,
        "end" => Offset::End,
        "stored" => Offset::Stored,
        _ => match text.strip_prefix('-') {
            Some(tail) => Offset::OffsetTail(
                tail.parse()
                    .with_context(|| format!("offset {text:?}: -N takes a count"))?,
            ),
            None => Offset::Offset(
                text.parse()
                    .with_context(|| format!("offset {text:?}: beginning, end, stored, N or -N"))?,
            ),
        },
    })
}

/// Where a group member without a commit starts (and where an out-of-range offset goes).
fn auto_offset_reset(start: Offset) -> &'static str {
    match start {
        Offset::End => "latest",
        _ => "earliest",
    }
}

/// One piece of a parsed `-f` format.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    KeyLength,
    ValueLength,
    Timestamp,
    Headers,
}

#[derive(Debug)]
struct Format(Vec<Piece>);

impl Format {
    fn parse(format: &str) -> anyhow::Result<Format> {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            let field = match c {
                '%' => match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('s') => Piece::Value,
                    Some('K') => Piece::KeyLength,
                    Some('S') => Piece::ValueLength,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some('%') => {
                        text.push(b'%');
                        continue;
                    }
                    other => bail!("format {format:?}: unknown field %{}", other.unwrap_or(' ')),
                },
                '\\' => {
                    match chars.next() {
                        Some('n') => text.push(b'\n'),
                        Some('t') => text.push(b'\t'),
                        Some('\\') => text.push(b'\\'),
                        other => bail!(
                            "format {format:?}: unknown escape \\{}",
                            other.unwrap_or(' ')
                        ),
                    }
                    continue;
                }
                c => {
                    let mut buf = [0u8; 4];
                    text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(field);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Format(pieces))
    }

    fn write(&self, out: &mut impl Write, message: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let key = message.key().unwrap_or_default();
        let value = message.payload().unwrap_or_default();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.write_all(text)?,
                Piece::Topic => out.write_all(message.topic().as_bytes())?,
                Piece::Partition => write!(out, "{}", message.partition())?,
                Piece::Offset => write!(out, "{}", message.offset())?,
                Piece::Key => out.write_all(key)?,
                Piece::Value => out.write_all(value)?,
                Piece::KeyLength => {
                    write!(out, "{}", message.key().map_or(-1, |k| k.len() as i64))?
                }
                Piece::ValueLength => {
                    write!(out, "{}", message.payload().map_or(-1, |v| v.len() as i64))?
                }
                Piece::Timestamp => {
                    write!(out, "{}", message.timestamp().to_millis().unwrap_or(-1))?
                }
                Piece::Headers => {
                    if let Some(headers) = message.headers() {
                        for (i, header) in headers.iter().enumerate() {
                            if i > 0 {
                                out.write_all(b",")?;
                            }
                            out.write_all(header.key.as_bytes())?;
                            out.write_all(b"=")?;
                            out.write_all(header.value.unwrap_or_default())?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_fields_escapes_and_text() {
        let Format(pieces) = Format::parse("%p:%o %k=%s\\t%%\\n").expect("valid");
        assert_eq!(
            pieces,
            [
                Piece::Partition,
                Piece::Text(b":".to_vec()),
                Piece::Offset,
                Piece::Text(b" ".to_vec()),
                Piece::Key,
                Piece::Text(b"=".to_vec()),
                Piece::Value,
                Piece::Text(b"\t%\n".to_vec()),
            ]
        );
        assert!(Format::parse("%x").is_err());
        assert!(Format::parse("trailing %").is_err());
        assert!(Format::parse("\\q").is_err());
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("beginning").unwrap(), Offset::Beginning);
        assert_eq!(parse_offset("end").unwrap(), Offset::End);
        assert_eq!(parse_offset("42").unwrap(), Offset::Offset(42));
        assert_eq!(parse_offset("-5").unwrap(), Offset::OffsetTail(5));
        assert!(parse_offset("soon").is_err());
        assert!(parse_offset("-x").is_err());
    }
}
