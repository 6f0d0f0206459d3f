//! Producer ids for idempotent and transactional producers, handed out without waiting on a
//! metadata write.
//!
//! The controller records blocks of [`PRODUCER_ID_BLOCK_SIZE`] ids
//! ([`crate::controller::Controller::allocate_producer_id_block`]); an id is used only from a
//! block already durable, so none is handed out twice, even across restarts (a restart starts
//! from the next unrecorded block; the rest of the last one is skipped). As Kafka's brokers do
//! with the blocks their controller grants (`RPCProducerIdManager`), the next block is asked for
//! in the background once 90% of the current one is used, so the transaction coordinator's
//! synchronous state machine never waits on the metadata log: [`ProducerIds::allocate`] takes
//! the next id, and only when both blocks are used up does it answer [`IdsNotReady`] (Kafka's
//! `COORDINATOR_LOAD_IN_PROGRESS`, which clients retry). Callers that can wait
//! ([`ProducerIds::allocate_waiting`]: InitProducerId without a transactional id, the
//! transaction coordinator's start) await a block instead.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::broker::Broker;
use crate::controller::ControllerError;

/// Producer ids allocated per durable metadata write.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;

/// No id is at hand: the next block is being recorded.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("no producer id block is ready yet (the next one is being recorded)")]
pub struct IdsNotReady;

/// The broker's blocks of producer ids.
#[derive(Debug, Default)]
pub struct ProducerIds {
    state: Mutex<State>,
    /// Serialises block requests: at most one is in flight.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// The ids of the current block not yet handed out.
    current: Range<i64>,
    /// The block recorded after it, if already here.
    next: Option<Range<i64>>,
    /// Whether a background request for the next block runs.
    prefetching: bool,
}

impl State {
    fn take(&mut self) -> Option<i64> {
        if self.current.is_empty() {
            self.current = self.next.take()?;
        }
        self.current.next()
    }

    /// Whether another block is needed: 90% of the current one used and none waiting.
    fn needs_block(&self) -> bool {
        let left = self.current.end - self.current.start;
        self.next.is_none() && left <= PRODUCER_ID_BLOCK_SIZE / 10
    }

    /// Whether to ask for it in the background: needed, and not asked already.
    fn wants_prefetch(&self) -> bool {
        self.needs_block() && !self.prefetching
    }

    fn add_block(&mut self, block: Range<i64>) {
        if self.current.is_empty() {
            self.current = block;
        } else {
            self.next = Some(block);
        }
    }
}

impl ProducerIds {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("producer id lock poisoned")
    }

    /// The next id, without waiting; asks for the next block in the background when due.
    pub fn allocate(broker: &Arc<Broker>) -> Result<i64, IdsNotReady> {
        let this = &broker.producer_ids;
        let mut state = this.lock();
        let id = state.take();
        if state.wants_prefetch() {
            state.prefetching = true;
            let broker = Arc::clone(broker);
            tokio::spawn(async move {
                if let Err(error) = Self::fetch(&broker).await {
                    tracing::error!(%error, "could not record a producer id block");
                }
                broker.producer_ids.lock().prefetching = false;
            });
        }
        id.ok_or(IdsNotReady)
    }

    /// The next id, waiting for a block to be recorded if none is at hand.
    pub async fn allocate_waiting(broker: &Arc<Broker>) -> Result<i64, ControllerError> {
        loop {
            if let Ok(id) = Self::allocate(broker) {
                return Ok(id);
            }
            Self::fetch(broker).await?;
        }
    }

    /// Makes sure a block is at hand (the transaction coordinator's start).
    pub async fn ensure_block(broker: &Arc<Broker>) -> Result<(), ControllerError> {
        if broker.producer_ids.lock().current.is_empty() {
            Self::fetch(broker).await?;
        }
        Ok(())
    }

    /// Records a new block unless one is already waiting (another fetch got it meanwhile).
    async fn fetch(broker: &Arc<Broker>) -> Result<(), ControllerError> {
        let this = &broker.producer_ids;
        let _fetching = this.fetching.lock().await;
        {
            let state = this.lock();
            if !state.needs_block() {
                return Ok(());
            }
        }
        let block = broker
            .controller
            .allocate_producer_id_block(PRODUCER_ID_BLOCK_SIZE)
            .await?;
        tracing::debug!(
            start = block.start,
            end = block.end,
            "producer id block recorded"
        );
        this.lock().add_block(block);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_current_block_then_the_next() {
        let mut state = State::default();
        assert_eq!(state.take(), None);
        state.add_block(0..3);
        assert!(state.wants_prefetch(), "3 ids left of a 1000-id block");
        state.add_block(1000..1002);
        assert!(!state.wants_prefetch(), "the next block is here");
        let ids: Vec<i64> = std::iter::from_fn(|| state.take()).collect();
        assert_eq!(ids, vec![0, 1, 2, 1000, 1001]);
    }

    #[test]
    fn the_next_block_is_wanted_at_ninety_percent() {
        let mut state = State::default();
        state.add_block(0..PRODUCER_ID_BLOCK_SIZE);
        for _ in 0..(PRODUCER_ID_BLOCK_SIZE * 9 / 10 - 1) {
            state.take();
        }
        assert!(!state.wants_prefetch());
        state.take();
        assert!(state.wants_prefetch());
        state.prefetching = true;
        assert!(!state.wants_prefetch(), "one request at a time");
    }
}
