//! `runnel group reset-offsets`: kafka-consumer-groups `--reset-offsets`. It prints the plan
//! (GROUP TOPIC PARTITION NEW-OFFSET, Kafka's table) and changes nothing unless `--execute`
//! is given (`--dry-run` says the default out loud). Where to: `--to-earliest`,
//! `--to-latest`, `--to-current`, `--to-offset N`, `--shift-by N`, `--to-datetime` (Kafka's
//! `YYYY-MM-DDTHH:mm:SS.sss`, with an optional zone) or `--by-duration` (ISO-8601 `PnDTnHnMnS`);
//! which partitions: `--topic t` / `--topic t:0,2` (repeatable) or `--all-topics`. The rules
//! (inactive groups only, clamping, timestamps) are `runnel_client::reset`'s.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use runnel_client::admin::Admin;
use runnel_client::reset::{ResetScope, ResetSpec};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("to").required(true)))]
#[command(group(clap::ArgGroup::new("scope").required(true)))]
pub struct ResetOffsetsArgs {
    group: String,
    /// A topic, or `topic:partition,partition...`; repeatable.
    #[arg(short, long = "topic", group = "scope")]
    topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long, group = "scope")]
    all_topics: bool,
    /// Commit the new offsets (without it, only the plan is printed).
    #[arg(long, conflicts_with = "dry_run")]
    execute: bool,
    /// Print the plan only (the default).
    #[arg(long)]
    dry_run: bool,
    /// To the log start offset.
    #[arg(long, group = "to")]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long, group = "to")]
    to_latest: bool,
    /// To the committed offset (the log end where there is none).
    #[arg(long, group = "to")]
    to_current: bool,
    /// To this offset (moved into each partition's log start and end).
    #[arg(long, group = "to", value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// The committed offset plus N (negative: back), moved into the log's range.
    #[arg(long, group = "to", value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// To the first record at or after this time: YYYY-MM-DDTHH:mm:SS.sss, optionally followed
    /// by Z or ±HH:MM (without one: UTC).
    #[arg(long, group = "to", value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// To the first record at or after this long ago: ISO-8601 PnDTnHnMnS, e.g. PT1H30M.
    #[arg(long, group = "to", value_name = "DURATION")]
    by_duration: Option<String>,
}

pub fn run(admin: &Admin, args: ResetOffsetsArgs) -> anyhow::Result<()> {
    let spec = spec(&args)?;
    let scope = if args.all_topics {
        ResetScope::AllTopics
    } else {
        ResetScope::Topics(
            args.topics
                .iter()
                .map(|topic| parse_topic(topic))
                .collect::<anyhow::Result<_>>()?,
        )
    };
    let plan = admin.plan_offset_reset(&args.group, &scope, spec)?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    if args.execute {
        admin.commit_offset_reset(&args.group, &plan)?;
    }
    let group_width = args.group.len().max(15);
    let topic_width = plan
        .offsets
        .iter()
        .map(|planned| planned.topic.len())
        .max()
        .unwrap_or(0)
        .max(15);
    if !plan.offsets.is_empty() {
        crate::outln!(
            "{:<group_width$} {:<topic_width$} {:<10} NEW-OFFSET",
            "GROUP",
            "TOPIC",
            "PARTITION"
        );
    }
    for planned in &plan.offsets {
        crate::outln!(
            "{:<group_width$} {:<topic_width$} {:<10} {}",
            args.group,
            planned.topic,
            planned.partition,
            planned.offset
        );
    }
    if !args.execute {
        eprintln!("Nothing was changed: this is the plan. Run again with --execute to commit it.");
    }
    Ok(())
}

fn spec(args: &ResetOffsetsArgs) -> anyhow::Result<ResetSpec> {
    Ok(if args.to_earliest {
        ResetSpec::Earliest
    } else if args.to_latest {
        ResetSpec::Latest
    } else if args.to_current {
        ResetSpec::Current
    } else if let Some(offset) = args.to_offset {
        ResetSpec::Offset(offset)
    } else if let Some(shift) = args.shift_by {
        ResetSpec::ShiftBy(shift)
    } else if let Some(datetime) = &args.to_datetime {
        ResetSpec::Timestamp(parse_datetime(datetime)?)
    } else if let Some(duration) = &args.by_duration {
        let ago = parse_duration_ms(duration)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("read the clock")?
            .as_millis();
        ResetSpec::Timestamp(i64::try_from(now).unwrap_or(i64::MAX).saturating_sub(ago))
    } else {
        bail!("say where to: --to-earliest, --to-latest, --to-current, --to-offset, --shift-by, --to-datetime or --by-duration")
    })
}

/// `topic` or `topic:0,2` (Kafka's `--topic` argument).
fn parse_topic(arg: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    let Some((topic, partitions)) = arg.split_once(':') else {
        return Ok((arg.to_string(), None));
    };
    if topic.is_empty() {
        bail!("--topic {arg:?}: expected a topic name before ':'");
    }
    let partitions = partitions
        .split(',')
        .map(|p| {
            p.trim().parse::<i32>().with_context(|| {
                format!("--topic {arg:?}: invalid partition {p:?}, expected topic:0,1,...")
            })
        })
        .collect::<anyhow::Result<Vec<i32>>>()?;
    Ok((topic.to_string(), Some(partitions)))
}

/// Kafka's `--to-datetime` (`Utils.getDateTime`): `YYYY-MM-DDTHH:mm:SS.sss`, the fraction
/// optional here, then an optional zone `Z`, `±HH:MM` or `±HHMM`; ms since the epoch.
/// Without a zone the time is read as UTC (Kafka reads it in the JVM's local zone).
fn parse_datetime(text: &str) -> anyhow::Result<i64> {
    let bad =
        || anyhow::anyhow!("--to-datetime {text:?}: expected YYYY-MM-DDTHH:mm:SS.sss[Z|±HH:MM]");
    let (date, rest) = text.split_once('T').ok_or_else(bad)?;
    let mut fields = date.splitn(3, '-');
    let mut field = |low: i64, high: i64| -> anyhow::Result<i64> {
        let value: i64 = fields.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        if (low..=high).contains(&value) {
            Ok(value)
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (field(0, 9999)?, field(1, 12)?, field(1, 31)?);
    // The zone: a trailing Z, or a sign after the seconds.
    let (time, zone_minutes) = if let Some(time) = rest.strip_suffix('Z') {
        (time, 0)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let (time, zone) = rest.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 {
            return Err(bad());
        }
        let hours: i64 = digits[..2].parse().map_err(|_| bad())?;
        let minutes: i64 = digits[2..].parse().map_err(|_| bad())?;
        (time, sign * (hours * 60 + minutes))
    } else {
        (rest, 0)
    };
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = clock.splitn(3, ':');
    let mut part = |high: i64| -> anyhow::Result<i64> {
        let value: i64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        if (0..=high).contains(&value) {
            Ok(value)
        } else {
            Err(bad())
        }
    };
    let (hour, minute, second) = (part(23)?, part(59)?, part(59)?);
    if fraction.is_empty() || fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let millis: i64 = format!("{fraction:0<3}").parse().map_err(|_| bad())?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - zone_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// An ISO-8601 duration as Java's `Duration.parse` reads it (`PnDTnHnMn.nS`, days being 24
/// hours), in ms.
fn parse_duration_ms(text: &str) -> anyhow::Result<i64> {
    let bad =
        || anyhow::anyhow!("--by-duration {text:?}: expected ISO-8601 PnDTnHnMnS, e.g. PT1H30M");
    let upper = text.to_ascii_uppercase();
    let rest = upper.strip_prefix('P').ok_or_else(bad)?;
    let (days, time) = match rest.split_once('T') {
        Some((days, time)) if !time.is_empty() => (days, time),
        Some(_) => return Err(bad()),
        None => (rest, ""),
    };
    let mut ms: f64 = 0.0;
    let mut any = false;
    if !days.is_empty() {
        let count = days.strip_suffix('D').ok_or_else(bad)?;
        ms += count.parse::<f64>().map_err(|_| bad())? * 86_400_000.0;
        any = true;
    }
    let mut number = String::new();
    for c in time.chars() {
        let unit_ms = match c {
            'H' => 3_600_000.0,
            'M' => 60_000.0,
            'S' => 1_000.0,
            '0'..='9' | '.' => {
                number.push(c);
                continue;
            }
            _ => return Err(bad()),
        };
        ms += std::mem::take(&mut number)
            .parse::<f64>()
            .map_err(|_| bad())?
            * unit_ms;
        any = true;
    }
    if !any || !number.is_empty() || !ms.is_finite() || ms < 0.0 {
        return Err(bad());
    }
    Ok(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_as_kafka_writes_them() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").unwrap(), 0);
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.5Z").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_datetime("2023-11-15T00:13:20.000+02:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime("2023-11-14T21:13:20-0100").unwrap(),
            1_700_000_000_000
        );
        for bad in [
            "2023-11-14",
            "2023-13-01T00:00:00",
            "2023-11-14T25:00:00",
            "soon",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse_as_java_duration() {
        assert_eq!(parse_duration_ms("PT1H30M").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("P1DT2S").unwrap(), 86_402_000);
        assert_eq!(parse_duration_ms("PT0.5S").unwrap(), 500);
        assert_eq!(parse_duration_ms("P2D").unwrap(), 172_800_000);
        for bad in ["P", "PT", "1H", "PT1X", "PT5"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_arguments_name_partitions_after_a_colon() {
        assert_eq!(parse_topic("jobs").unwrap(), ("jobs".to_string(), None));
        assert_eq!(
            parse_topic("jobs:0,2").unwrap(),
            ("jobs".to_string(), Some(vec![0, 2]))
        );
        assert!(parse_topic("jobs:x").is_err());
        assert!(parse_topic(":1").is_err());
    }
}
