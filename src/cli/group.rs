//! `runnel group`: kafka-consumer-groups for Runnel (or any Kafka cluster): list groups,
//! describe one (state, assignor, and per partition its commit, log end offset, lag and
//! owner, in kafka-consumer-groups' columns), delete empty groups, and reset an inactive
//! group's offsets.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use runnel_client::admin::{GroupDescription, ResetTo};

use super::cluster::{report_each, ClusterArgs};

#[derive(Args)]
pub struct GroupArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Print every group's id, one a line.
    List,
    /// Print a group's state, members and, per partition, commit, log end offset and lag.
    Describe {
        group: String,
        /// Topics to report [default: those assigned to the group's members].
        #[arg(short, long = "topic")]
        topics: Vec<String>,
    },
    /// Delete groups (only empty ones: a group with members is refused).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move an inactive group's committed offsets on every partition of a topic.
    ResetOffsets {
        group: String,
        #[arg(short, long)]
        topic: String,
        /// To the log start offset.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To the log end offset.
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To this offset (within each partition's log start and end).
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
    },
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin()?;
    match args.command {
        GroupCommand::List => {
            let mut groups = admin.groups(None).context("list groups")?;
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            for group in groups {
                println!("{}", group.group_id);
            }
        }
        GroupCommand::Describe { group, topics } => {
            let Some(description) = admin
                .groups(Some(&group))
                .with_context(|| format!("describe group {group}"))?
                .into_iter()
                .next()
            else {
                bail!("group {group}: not described");
            };
            print_state(&description);
            let lags = admin
                .group_lag(&group, &topics)
                .with_context(|| format!("read the offsets of group {group}"))?;
            println!(
                "{:<20} {:<20} {:>9} {:>14} {:>14} {:>8}  {:<40} {:<16} CLIENT-ID",
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST"
            );
            for lag in &lags.partitions {
                let owner = description.members.iter().find(|m| {
                    m.assignment
                        .iter()
                        .any(|(t, p)| *t == lag.topic && *p == lag.partition)
                });
                println!(
                    "{:<20} {:<20} {:>9} {:>14} {:>14} {:>8}  {:<40} {:<16} {}",
                    group,
                    lag.topic,
                    lag.partition,
                    dash(lag.committed),
                    dash(lag.end_offset),
                    dash(lag.lag()),
                    owner.map_or("-", |m| m.member_id.as_str()),
                    owner.map_or("-", |m| m.client_host.as_str()),
                    owner.map_or("-", |m| m.client_id.as_str()),
                );
            }
        }
        GroupCommand::Delete { groups } => {
            let outcomes = admin
                .delete_groups(&groups)
                .with_context(|| format!("delete {}", groups.join(", ")))?;
            report_each(outcomes, |group| format!("Deleted group {group}."))?;
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
        } => {
            let to = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => ResetTo::Earliest,
                (_, true, _) => ResetTo::Latest,
                (_, _, Some(offset)) => ResetTo::Offset(offset),
                _ => bail!("say where to: --to-earliest, --to-latest or --to-offset N"),
            };
            let chosen = admin
                .reset_group_offsets(&group, &topic, to)
                .with_context(|| format!("reset the offsets of group {group} on {topic}"))?;
            println!(
                "{:<20} {:<20} {:>9} NEW-OFFSET",
                "GROUP", "TOPIC", "PARTITION"
            );
            for (partition, offset) in chosen {
                println!("{group:<20} {topic:<20} {partition:>9} {offset}");
            }
        }
    }
    Ok(())
}

/// A figure, or Kafka's `-` for an unknown one.
fn dash(figure: Option<i64>) -> String {
    figure.map_or("-".to_string(), |f| f.to_string())
}

fn print_state(group: &GroupDescription) {
    let assignor = if group.protocol.is_empty() {
        "-"
    } else {
        group.protocol.as_str()
    };
    println!(
        "Group {}: state {}, assignor {assignor}, {} member(s)",
        group.group_id,
        group.state,
        group.members.len()
    );
}
