//! The coordinator driven by hand: explicit times, reply handles as numbers.

use bytes::Bytes;
use runnel_protocol::ErrorCode;

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn join(group: &str, member_id: &str, instance: Option<&str>) -> Request {
    Request::Join(JoinRequest {
        group_id: group.into(),
        member_id: member_id.into(),
        group_instance_id: instance.map(Into::into),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
    })
}

fn sync(group: &str, generation: i32, member_id: &str, assignments: &[(&str, &str)]) -> Request {
    Request::Sync(SyncRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a.as_bytes())))
            .collect(),
    })
}

fn heartbeat(group: &str, generation: i32, member_id: &str) -> Request {
    Request::Heartbeat(HeartbeatRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
    })
}

fn commit(group: &str, generation: i32, member_id: &str, offset: i64) -> Request {
    Request::Commit(CommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
        partitions: vec![CommitPartition {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: 0,
            metadata: Some("m".into()),
        }],
    })
}

fn join_result(out: &Output<u32>, to: u32) -> JoinResult {
    out.replies
        .iter()
        .find_map(|(id, r)| match r {
            Response::Join(result) if *id == to => Some(result.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join reply to {to} in {out:?}"))
}

fn sync_result(out: &Output<u32>, to: u32) -> SyncResult {
    out.replies
        .iter()
        .find_map(|(id, r)| match r {
            Response::Sync(result) if *id == to => Some(result.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sync reply to {to} in {out:?}"))
}

fn heartbeat_error(c: &mut Coordinator<u32>, request: Request, now: i64) -> ErrorCode {
    match &c.handle(request, 0, now).replies[..] {
        [(_, Response::Heartbeat(error))] => *error,
        other => panic!("unexpected {other:?}"),
    }
}

/// Joins a new member through MEMBER_ID_REQUIRED; returns its id (join reply may be parked).
fn join_new(c: &mut Coordinator<u32>, group: &str, reply: u32, now: i64) -> (String, Output<u32>) {
    let first = c.handle(join(group, "", None), reply, now);
    let required = join_result(&first, reply);
    assert_eq!(required.error, ErrorCode::MemberIdRequired);
    let out = c.handle(join(group, &required.member_id, None), reply, now);
    (required.member_id, out)
}

#[test]
fn a_single_member_joins_syncs_and_heartbeats() {
    let mut c = Coordinator::new(config(), 0);
    let (member, out) = join_new(&mut c, "g", 1, 0);
    let joined = join_result(&out, 1);
    assert_eq!(joined.error, ErrorCode::None);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, member);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    let out = c.handle(sync("g", 1, &member, &[(&member, "p0")]), 2, 10);
    assert_eq!(sync_result(&out, 2).assignment, Bytes::from_static(b"p0"));
    assert!(matches!(out.records[..], [CoordinatorRecord::Group { .. }]));
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("g", 1, &member), 20),
        ErrorCode::None
    );
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("g", 0, &member), 20),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("g", 1, "nobody"), 20),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("nope", 1, &member), 20),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn a_second_member_triggers_a_rebalance_and_the_leader_assigns() {
    let mut c = Coordinator::new(config(), 0);
    let (a, _) = join_new(&mut c, "g", 1, 0);
    c.handle(sync("g", 1, &a, &[(&a, "all")]), 2, 0);
    let (b, out) = join_new(&mut c, "g", 3, 100);
    assert!(out.replies.is_empty(), "b's join waits for a: {out:?}");
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("g", 1, &a), 200),
        ErrorCode::RebalanceInProgress
    );
    let out = c.handle(join("g", &a, None), 4, 300);
    let (for_a, for_b) = (join_result(&out, 4), join_result(&out, 3));
    assert_eq!(for_a.generation_id, 2);
    assert_eq!(for_a.members.len(), 2);
    assert!(for_b.members.is_empty());
    assert_eq!(for_b.leader, a);
    // b syncs first and waits for the leader.
    let out = c.handle(sync("g", 2, &b, &[]), 5, 400);
    assert!(out.replies.is_empty());
    let out = c.handle(sync("g", 2, &a, &[(&a, "x"), (&b, "y")]), 6, 500);
    assert_eq!(sync_result(&out, 5).assignment, Bytes::from_static(b"y"));
    assert_eq!(sync_result(&out, 6).assignment, Bytes::from_static(b"x"));
    let Response::Describe(described) = &c
        .handle(Request::Describe(vec!["g".into()]), 7, 600)
        .replies[0]
        .1
    else {
        panic!("describe");
    };
    assert_eq!(described[0].state, "Stable");
    assert_eq!(described[0].members.len(), 2);
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout() {
    let mut c = Coordinator::new(config(), 0);
    let (a, _) = join_new(&mut c, "g", 1, 0);
    c.handle(sync("g", 1, &a, &[]), 2, 0);
    let (b, out) = join_new(&mut c, "g", 3, 0);
    assert!(out.replies.is_empty());
    // a never rejoins: the rebalance timeout drops it.
    assert!(c.next_deadline_ms() <= i64::from(REBALANCE_MS));
    let out = c.expire(i64::from(REBALANCE_MS));
    let joined = join_result(&out, 3);
    assert_eq!(joined.leader, b);
    assert_eq!(joined.members.len(), 1);
    c.handle(sync("g", 2, &b, &[]), 4, i64::from(REBALANCE_MS));
    // b stops heartbeating: evicted after the session timeout, the group empties.
    let deadline = i64::from(REBALANCE_MS + SESSION_MS);
    assert_eq!(c.next_deadline_ms(), deadline);
    c.expire(deadline);
    let Response::List(listed) = &c.handle(Request::List(vec![]), 5, deadline).replies[0].1 else {
        panic!("list");
    };
    assert_eq!(listed[0].state, "Empty");
}

#[test]
fn the_initial_rebalance_delay_holds_the_first_join() {
    let mut c = Coordinator::new(
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            ..GroupConfig::default()
        },
        0,
    );
    let (_, out) = join_new(&mut c, "g", 1, 0);
    assert!(out.replies.is_empty());
    assert_eq!(c.next_deadline_ms(), 3_000);
    assert!(c.expire(2_999).replies.is_empty());
    assert_eq!(join_result(&c.expire(3_000), 1).generation_id, 1);
}

#[test]
fn commits_are_checked_stored_and_fetched() {
    let mut c = Coordinator::new(config(), 0);
    // A simple consumer (generation -1, no member id) may commit to an unknown group.
    let out = c.handle(commit("simple", -1, "", 5), 1, 0);
    assert_eq!(out.records.len(), 1);
    assert!(matches!(&out.replies[0].1, Response::Commit(r) if r[0].2 == ErrorCode::None));
    // Not with a generation.
    let out = c.handle(commit("other", 3, "m", 5), 2, 0);
    assert!(
        matches!(&out.replies[0].1, Response::Commit(r) if r[0].2 == ErrorCode::IllegalGeneration)
    );
    let (a, _) = join_new(&mut c, "g", 3, 0);
    let out = c.handle(commit("g", 1, &a, 7), 4, 0);
    assert!(
        matches!(&out.replies[0].1, Response::Commit(r) if r[0].2 == ErrorCode::RebalanceInProgress)
    );
    c.handle(sync("g", 1, &a, &[]), 5, 0);
    let out = c.handle(commit("g", 1, &a, 7), 6, 0);
    assert!(matches!(&out.replies[0].1, Response::Commit(r) if r[0].2 == ErrorCode::None));
    let out = c.handle(commit("g", 1, "stranger", 7), 7, 0);
    assert!(
        matches!(&out.replies[0].1, Response::Commit(r) if r[0].2 == ErrorCode::UnknownMemberId)
    );
    let fetch = Request::Fetch(FetchRequest {
        group_id: "g".into(),
        partitions: Some(vec![("t".into(), 0), ("t".into(), 1)]),
        require_stable: false,
    });
    let Response::Fetch(result) = &c.handle(fetch, 8, 0).replies[0].1 else {
        panic!("fetch");
    };
    assert_eq!(
        (
            result.offsets[0].offset,
            result.offsets[0].metadata.as_str()
        ),
        (7, "m")
    );
    assert_eq!(result.offsets[1].offset, -1);
}

#[test]
fn offsets_are_rebuilt_from_records() {
    let mut c: Coordinator<u32> = Coordinator::new(config(), 0);
    let records = c.handle(commit("simple", -1, "", 5), 1, 0).records;
    let mut reloaded: Coordinator<u32> = Coordinator::new(config(), 0);
    for record in records {
        reloaded.replay(record, 0);
    }
    reloaded.finish_load();
    let fetch = Request::Fetch(FetchRequest {
        group_id: "simple".into(),
        partitions: None,
        require_stable: false,
    });
    let Response::Fetch(result) = &reloaded.handle(fetch, 2, 0).replies[0].1 else {
        panic!("fetch");
    };
    assert_eq!(result.offsets[0].offset, 5);
}

#[test]
fn only_empty_groups_are_deleted() {
    let mut c = Coordinator::new(config(), 0);
    c.handle(commit("simple", -1, "", 5), 1, 0);
    join_new(&mut c, "busy", 2, 0);
    let out = c.handle(
        Request::Delete(vec!["simple".into(), "busy".into(), "none".into()]),
        3,
        0,
    );
    assert_eq!(out.records.len(), 2, "an offset and a group tombstone");
    let Response::Delete(results) = &out.replies[0].1 else {
        panic!("delete");
    };
    let errors: Vec<ErrorCode> = results.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        errors,
        [
            ErrorCode::None,
            ErrorCode::NonEmptyGroup,
            ErrorCode::GroupIdNotFound
        ]
    );
}

#[test]
fn a_restarted_static_member_keeps_its_assignment_and_fences_the_old_id() {
    let mut c = Coordinator::new(config(), 0);
    let out = c.handle(join("g", "", Some("i1")), 1, 0);
    let first = join_result(&out, 1);
    assert_eq!(
        first.error,
        ErrorCode::None,
        "static members need no second join"
    );
    c.handle(
        sync("g", 1, &first.member_id, &[(&first.member_id, "p")]),
        2,
        0,
    );
    let out = c.handle(join("g", "", Some("i1")), 3, 100);
    let again = join_result(&out, 3);
    assert_eq!(again.generation_id, 1, "no rebalance");
    assert_ne!(again.member_id, first.member_id);
    let out = c.handle(sync("g", 1, &again.member_id, &[]), 4, 100);
    assert_eq!(sync_result(&out, 4).assignment, Bytes::from_static(b"p"));
    let fenced = Request::Heartbeat(HeartbeatRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: first.member_id.clone(),
        group_instance_id: Some("i1".into()),
    });
    assert_eq!(
        heartbeat_error(&mut c, fenced, 100),
        ErrorCode::FencedInstanceId
    );
}

#[test]
fn join_errors() {
    let mut c = Coordinator::new(config(), 0);
    let mut bad = join("g", "", None);
    if let Request::Join(j) = &mut bad {
        j.session_timeout_ms = 10;
    }
    assert_eq!(
        join_result(&c.handle(bad, 1, 0), 1).error,
        ErrorCode::InvalidSessionTimeout
    );
    assert_eq!(
        join_result(&c.handle(join("g", "ghost", None), 2, 0), 2).error,
        ErrorCode::UnknownMemberId
    );
    join_new(&mut c, "g", 3, 0);
    let mut other = join("g", "", None);
    if let Request::Join(j) = &mut other {
        j.protocols = vec![("roundrobin".into(), Bytes::new())];
    }
    assert_eq!(
        join_result(&c.handle(other, 4, 0), 4).error,
        ErrorCode::InconsistentGroupProtocol
    );
    let mut small = Coordinator::new(
        GroupConfig {
            group_size_max: 1,
            ..config()
        },
        0,
    );
    join_new(&mut small, "g", 5, 0);
    assert_eq!(
        join_result(&small.handle(join("g", "", None), 6, 0), 6).error,
        ErrorCode::GroupMaxSizeReached
    );
}

#[test]
fn a_member_leaving_rebalances_the_rest() {
    let mut c = Coordinator::new(config(), 0);
    let (a, _) = join_new(&mut c, "g", 1, 0);
    c.handle(sync("g", 1, &a, &[]), 2, 0);
    let (b, _) = join_new(&mut c, "g", 3, 0);
    let out = c.handle(join("g", &a, None), 4, 0);
    assert_eq!(join_result(&out, 4).generation_id, 2);
    c.handle(sync("g", 2, &a, &[]), 5, 0);
    let leave = Request::Leave {
        group_id: "g".into(),
        members: vec![LeavingMember {
            member_id: b.clone(),
            group_instance_id: None,
        }],
    };
    let out = c.handle(leave, 6, 0);
    assert!(matches!(&out.replies[0].1, Response::Leave(r) if r.members[0].2 == ErrorCode::None));
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("g", 2, &a), 0),
        ErrorCode::RebalanceInProgress
    );
    let out = c.handle(join("g", &a, None), 7, 0);
    assert_eq!(join_result(&out, 7).generation_id, 3);
}

#[test]
fn an_empty_groups_offsets_expire_after_the_retention() {
    let retention = GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1_000,
        ..config()
    };
    let mut c = Coordinator::new(retention, 0);
    c.handle(commit("idle", -1, "", 5), 1, 0);
    let fetch = || {
        Request::Fetch(FetchRequest {
            group_id: "idle".into(),
            partitions: Some(vec![("t".into(), 0)]),
            require_stable: false,
        })
    };
    // Before the retention has passed, the offset stays.
    let out = c.expire(30_000);
    assert!(out.records.is_empty());
    let Response::Fetch(kept) = &c.handle(fetch(), 2, 30_000).replies[0].1 else {
        panic!("fetch");
    };
    assert_eq!(kept.offsets[0].offset, 5);
    // After it, the offset is tombstoned, and the group, left with nothing, too.
    let out = c.expire(61_000);
    assert!(out.records.iter().any(|r| matches!(
        r,
        CoordinatorRecord::Offset { group, value: None, .. } if group == "idle"
    )));
    assert!(out.records.iter().any(|r| matches!(
        r,
        CoordinatorRecord::Group { group, value: None } if group == "idle"
    )));
    let Response::Fetch(gone) = &c.handle(fetch(), 3, 61_000).replies[0].1 else {
        panic!("fetch");
    };
    assert_eq!(gone.offsets[0].offset, -1);
}

#[test]
fn list_groups_filters_by_state_case_insensitively() {
    let mut c = Coordinator::new(config(), 0);
    let (a, _) = join_new(&mut c, "busy", 1, 0);
    c.handle(sync("busy", 1, &a, &[]), 2, 0);
    c.handle(commit("quiet", -1, "", 1), 3, 0);
    let list = |c: &mut Coordinator<u32>, states: &[&str]| {
        let request = Request::List(states.iter().map(|s| s.to_string()).collect());
        let Response::List(groups) = &c.handle(request, 9, 0).replies[0].1 else {
            panic!("list");
        };
        let mut listed: Vec<(String, &str)> = groups
            .iter()
            .map(|g| (g.group_id.clone(), g.state))
            .collect();
        listed.sort();
        listed
    };
    assert_eq!(
        list(&mut c, &[]),
        vec![
            ("busy".to_string(), "Stable"),
            ("quiet".to_string(), "Empty")
        ]
    );
    assert_eq!(
        list(&mut c, &["stable"]),
        vec![("busy".to_string(), "Stable")]
    );
    assert_eq!(
        list(&mut c, &["Empty", "Dead"]),
        vec![("quiet".to_string(), "Empty")]
    );
}

/// Two members joined in generation 2 with `a` as the leader; neither has synced yet.
fn two_members_joined(c: &mut Coordinator<u32>) -> (String, String) {
    let (a, _) = join_new(c, "g", 1, 0);
    c.handle(sync("g", 1, &a, &[(&a, "all")]), 2, 0);
    let (b, _) = join_new(c, "g", 3, 0);
    let out = c.handle(join("g", &a, None), 4, 0);
    assert_eq!(join_result(&out, 4).generation_id, 2);
    assert_eq!(join_result(&out, 4).leader, a);
    (a, b)
}

#[test]
fn a_leader_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut c = Coordinator::new(config(), 0);
    let (a, b) = two_members_joined(&mut c);
    let out = c.handle(sync("g", 2, &b, &[]), 5, 100);
    assert!(
        out.replies.is_empty(),
        "b waits for the leader's assignment"
    );
    // The leader stays alive (heartbeats) but never assigns.
    let timeout = i64::from(REBALANCE_MS);
    for now in (5_000..timeout).step_by(5_000) {
        assert_eq!(
            heartbeat_error(&mut c, heartbeat("g", 2, &a), now),
            ErrorCode::None
        );
        assert!(c.expire(now).replies.is_empty());
    }
    assert_eq!(c.next_deadline_ms(), timeout);
    let out = c.expire(timeout);
    assert_eq!(sync_result(&out, 5).error, ErrorCode::RebalanceInProgress);
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("g", 2, &a), timeout),
        ErrorCode::UnknownMemberId
    );
    // b rejoins alone and leads generation 3.
    let out = c.handle(join("g", &b, None), 6, timeout);
    let joined = join_result(&out, 6);
    assert_eq!(
        (joined.generation_id, joined.leader.as_str()),
        (3, b.as_str())
    );
    assert_eq!(joined.members.len(), 1);
}

#[test]
fn a_follower_that_never_syncs_is_removed_from_the_stable_group() {
    let mut c = Coordinator::new(config(), 0);
    let (a, b) = two_members_joined(&mut c);
    let out = c.handle(sync("g", 2, &a, &[(&a, "x"), (&b, "y")]), 5, 100);
    assert_eq!(sync_result(&out, 5).assignment, Bytes::from_static(b"x"));
    // b heartbeats in the stable group but never fetches its assignment.
    let timeout = i64::from(REBALANCE_MS);
    for now in (5_000..timeout).step_by(5_000) {
        assert_eq!(
            heartbeat_error(&mut c, heartbeat("g", 2, &b), now),
            ErrorCode::None
        );
        assert_eq!(
            heartbeat_error(&mut c, heartbeat("g", 2, &a), now),
            ErrorCode::None
        );
        assert!(c.expire(now).replies.is_empty());
    }
    c.expire(timeout);
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("g", 2, &a), timeout),
        ErrorCode::RebalanceInProgress
    );
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("g", 2, &b), timeout),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn members_that_all_sync_leave_no_sync_deadline() {
    let mut c = Coordinator::new(config(), 0);
    let (a, b) = two_members_joined(&mut c);
    c.handle(sync("g", 2, &b, &[]), 5, 100);
    c.handle(sync("g", 2, &a, &[(&a, "x"), (&b, "y")]), 6, 200);
    // Only the session timeouts (from the syncs) and the retention check remain.
    assert_eq!(c.next_deadline_ms(), 100 + i64::from(SESSION_MS));
    for now in (9_000..=i64::from(REBALANCE_MS)).step_by(9_000) {
        assert_eq!(
            heartbeat_error(&mut c, heartbeat("g", 2, &a), now),
            ErrorCode::None
        );
        assert_eq!(
            heartbeat_error(&mut c, heartbeat("g", 2, &b), now),
            ErrorCode::None
        );
        assert!(c.expire(now).replies.is_empty());
    }
    let after_timeout = i64::from(REBALANCE_MS) + 1;
    assert!(c.expire(after_timeout).replies.is_empty());
    assert_eq!(
        heartbeat_error(&mut c, heartbeat("g", 2, &a), after_timeout),
        ErrorCode::None
    );
}
