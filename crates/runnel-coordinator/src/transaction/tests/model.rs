//! Random sequences of requests, marker completions, timer ticks and restarts. Two invariants:
//! nothing a client sends makes the coordinator panic, and replaying the records it wrote
//! rebuilds exactly the state it holds (every change is in the log, so a restart loses none;
//! Kafka's `TransactionStateManager` relies on the same).

use proptest::prelude::*;

use super::*;

const IDS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Init {
        id: usize,
        expected: u8,
    },
    Add {
        id: usize,
        delta: i16,
        partition: i32,
        v2: bool,
    },
    AddOffsets {
        id: usize,
        delta: i16,
    },
    Verify {
        id: usize,
        delta: i16,
    },
    End {
        id: usize,
        delta: i16,
        commit: bool,
        v2: bool,
    },
    MarkersWritten {
        index: usize,
    },
    Tick {
        ms: i64,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..IDS.len();
    let delta = -1i16..=1;
    prop_oneof![
        (id.clone(), 0u8..3).prop_map(|(id, expected)| Op::Init { id, expected }),
        (id.clone(), delta.clone(), 0..3, any::<bool>()).prop_map(|(id, delta, partition, v2)| {
            Op::Add {
                id,
                delta,
                partition,
                v2,
            }
        }),
        (id.clone(), delta.clone()).prop_map(|(id, delta)| Op::AddOffsets { id, delta }),
        (id.clone(), delta.clone()).prop_map(|(id, delta)| Op::Verify { id, delta }),
        (id, delta, any::<bool>(), any::<bool>()).prop_map(|(id, delta, commit, v2)| Op::End {
            id,
            delta,
            commit,
            v2
        }),
        (0..4usize).prop_map(|index| Op::MarkersWritten { index }),
        (1..40_000i64).prop_map(|ms| Op::Tick { ms }),
        Just(Op::Restart),
    ]
}

fn model_config() -> TxnConfig {
    TxnConfig {
        transaction_state_partitions: 1,
        abort_timed_out_transaction_cleanup_interval_ms: 1_000,
        remove_expired_transaction_cleanup_interval_ms: 50_000,
        transactional_id_expiration_ms: 200_000,
        ..TxnConfig::default()
    }
}

struct World {
    c: TxnCoordinator,
    log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    markers: Vec<WriteMarkers>,
    now_ms: i64,
    restarts: i64,
}

impl World {
    fn take(&mut self, out: TxnOutput<u32>) {
        persist(&mut self.log, &out);
        self.markers.extend(out.markers);
    }

    /// The producer a request of `id` names: the held one, off by `delta` epochs.
    fn producer(&self, id: &str, delta: i16) -> (i64, i16) {
        self.c.transaction(id).map_or((1, 0), |t| {
            (t.producer_id, t.producer_epoch.saturating_add(delta))
        })
    }

    fn request(&mut self, request: TxnRequest) {
        let out = self.c.handle(request, 0, self.now_ms);
        assert_eq!(out.replies.len(), 1, "one reply per request");
        self.take(out);
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Init { id, expected } => {
                let held = self.producer(IDS[id], 0);
                let producer_id_and_epoch = match expected {
                    0 => None,
                    1 => Some(held),
                    _ => Some((held.0, held.1.saturating_sub(1))),
                };
                self.request(TxnRequest::InitProducerId(InitProducerIdRequest {
                    transactional_id: IDS[id].into(),
                    transaction_timeout_ms: 60_000,
                    producer_id_and_epoch,
                }));
            }
            Op::Add {
                id,
                delta,
                partition,
                v2,
            } => {
                let (producer_id, producer_epoch) = self.producer(IDS[id], delta);
                self.request(TxnRequest::AddPartitions(AddPartitionsRequest {
                    transactional_id: IDS[id].into(),
                    producer_id,
                    producer_epoch,
                    partitions: vec![("t".into(), partition)],
                    client_version: if v2 { TxnVersion::V2 } else { TxnVersion::V0 },
                }));
            }
            Op::AddOffsets { id, delta } => {
                let (producer_id, producer_epoch) = self.producer(IDS[id], delta);
                self.request(TxnRequest::AddOffsets(AddOffsetsRequest {
                    transactional_id: IDS[id].into(),
                    producer_id,
                    producer_epoch,
                    group_id: "g".into(),
                    client_version: TxnVersion::V0,
                }));
            }
            Op::Verify { id, delta } => {
                let (producer_id, producer_epoch) = self.producer(IDS[id], delta);
                self.request(TxnRequest::VerifyPartitions(VerifyPartitionsRequest {
                    transactional_id: IDS[id].into(),
                    producer_id,
                    producer_epoch,
                    partitions: vec![("t".into(), 0)],
                }));
            }
            Op::End {
                id,
                delta,
                commit,
                v2,
            } => {
                let (producer_id, producer_epoch) = self.producer(IDS[id], delta);
                self.request(TxnRequest::EndTxn(EndTxnRequest {
                    transactional_id: IDS[id].into(),
                    producer_id,
                    producer_epoch,
                    result: if commit {
                        TxnResult::Commit
                    } else {
                        TxnResult::Abort
                    },
                    client_version: if v2 { TxnVersion::V2 } else { TxnVersion::V0 },
                }));
            }
            Op::MarkersWritten { index } => {
                if !self.markers.is_empty() {
                    let markers = self.markers.remove(index % self.markers.len());
                    let out = self.c.markers_written(&markers, self.now_ms);
                    self.take(out);
                }
            }
            Op::Tick { ms } => {
                self.now_ms += ms;
                let out = self.c.expire(self.now_ms);
                self.take(out);
            }
            Op::Restart => self.restart(),
        }
    }

    /// Rebuilds the coordinator from the log, checks it matches, and carries on with it.
    fn restart(&mut self) {
        self.restarts += 1;
        let mut reloaded = TxnCoordinator::new(
            model_config(),
            0,
            self.c.coordinator_epoch() + 1,
            Box::new(Ids(100_000 * (self.restarts + 1))),
            self.now_ms,
        );
        for (key, value) in &self.log {
            let record = TxnRecord::decode(Some(key), value.as_deref()).expect("decodes");
            reloaded.replay(record);
        }
        assert_same(&self.c, &reloaded);
        self.c = reloaded;
        self.markers.clear();
        let out = self.c.finish_load(self.now_ms);
        self.take(out);
    }
}

fn assert_same(live: &TxnCoordinator, reloaded: &TxnCoordinator) {
    assert_eq!(live.transaction_count(), reloaded.transaction_count());
    for id in IDS {
        let strip = |c: &TxnCoordinator| {
            c.transaction(id).map(|t| TxnMetadata {
                last_producer_epoch: NO_PRODUCER_EPOCH,
                ..t.clone()
            })
        };
        assert_eq!(strip(live), strip(reloaded), "transactional id {id}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_log_always_rebuilds_the_state_and_nothing_panics(
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut c = TxnCoordinator::new(model_config(), 0, 1, Box::new(Ids(1000)), 0);
        let _: TxnOutput<u32> = c.finish_load(0);
        let mut world = World {
            c,
            log: Vec::new(),
            markers: Vec::new(),
            now_ms: 0,
            restarts: 0,
        };
        for op in ops {
            world.step(op);
        }
        world.restart();
    }
}
