//! `runnel group`: kafka-consumer-groups for Runnel (or any Kafka cluster): list groups,
//! describe one (state, assignor, and per partition its commit, log end offset, lag and
//! owner, in kafka-consumer-groups' columns), delete empty groups, and reset an inactive
//! group's offsets ([`super::reset_offsets`]).

use anyhow::bail;
use clap::{Args, Subcommand};
use runnel_client::admin::GroupDescription;

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
    /// Plan (and with --execute, commit) new offsets for an inactive group, as
    /// kafka-consumer-groups --reset-offsets.
    ResetOffsets(super::reset_offsets::ResetOffsetsArgs),
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin()?;
    match args.command {
        GroupCommand::List => {
            let mut groups = admin.groups(None)?;
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            for group in groups {
                crate::outln!("{}", group.group_id);
            }
        }
        GroupCommand::Describe { group, topics } => {
            let Some(description) = admin.groups(Some(&group))?.into_iter().next() else {
                bail!("Consumer group '{group}' does not exist.");
            };
            print_state(&description)?;
            let lags = admin.group_lag(&group, &topics)?;
            crate::outln!(
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
                crate::outln!(
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
            let outcomes = admin.delete_groups(&groups)?;
            report_each(outcomes, |group| format!("Deleted group {group}."))?;
        }
        GroupCommand::ResetOffsets(reset) => super::reset_offsets::run(&admin, reset)?,
    }
    Ok(())
}

/// A figure, or Kafka's `-` for an unknown one.
fn dash(figure: Option<i64>) -> String {
    figure.map_or("-".to_string(), |f| f.to_string())
}

fn print_state(group: &GroupDescription) -> anyhow::Result<()> {
    let assignor = if group.protocol.is_empty() {
        "-"
    } else {
        group.protocol.as_str()
    };
    crate::outln!(
        "Group {}: state {}, assignor {assignor}, {} member(s)",
        group.group_id,
        group.state,
        group.members.len()
    );
    Ok(())
}
