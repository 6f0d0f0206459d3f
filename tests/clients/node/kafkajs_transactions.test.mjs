// kafkajs 2.2.4 transactions against Runnel (node:test): KIP-98 as kafkajs drives it.
// test_transactions_confluent.py pins the same with librdkafka and kafka-python.
//
// The producer is kafkajs's transactional one (`transactionalId`, `idempotent: true`,
// `maxInFlightRequests: 1`): `producer.transaction()` sends InitProducerId with the
// transactional.id (once), then each `send` adds its partitions (AddPartitionsToTxn) before the
// Produce, `sendOffsets` sends AddOffsetsToTxn to the transaction coordinator and TxnOffsetCommit
// to the group coordinator, and `commit`/`abort` send EndTxn. The readers are kafkajs consumers
// (kafkajs has no assign-only consumer, so each joins a group of its own) with
// `readUncommitted: false` (Fetch isolation_level 1, read_committed, kafkajs's default) or
// `readUncommitted: true` (0). kafkajs drops control records itself and, for read_committed,
// the records of the aborted transactions the Fetch response lists (filterAbortedMessages.js,
// as the Java client does), so what a consumer is handed depends on the broker's log and its
// Fetch response's aborted_transactions, not only on the isolation level it sent.
//
// What each test pins of Kafka's behaviour:
//  1. Commit: while the transaction is open the last stable offset stays at its first offset, 0
//     (a read_committed ListOffsets for the latest offset answers the LSO); EndTxn(commit)
//     makes the coordinator write a COMMIT marker (a control batch of one record, which takes an
//     offset) to each partition of the transaction, so after N records from offset 0 the latest
//     offset is N+1 and the next record appended gets offset N+1. A read_committed consumer is
//     handed exactly the committed records at offsets 0..N-1 and the next one at N+1: nothing
//     at the marker's offset N, and the high watermark its Fetch reports counts the marker.
//  2. Abort: EndTxn(abort) writes an ABORT marker to each partition; a read_committed consumer
//     never sees the aborted records (the Fetch response lists the aborted transaction) but
//     does see the committed transaction after them, while a read_uncommitted consumer is
//     handed the aborted records too. Neither is handed anything at a marker's offset (ABORT,
//     then COMMIT): every offset below the high watermark is a record one of them reads or a
//     marker neither does.
//  3. sendOffsets (KIP-98's AddOffsetsToTxn + TxnOffsetCommit): offsets sent in a transaction
//     stay pending, invisible to OffsetFetch (admin.fetchOffsets reads -1), until the COMMIT
//     marker reaches the group's __consumer_offsets partition; then they are the group's
//     committed offsets. Offsets sent in an aborted transaction are never committed: the
//     group's offsets stay what the last committed transaction left, also after a later
//     transaction (offsets only, no records) has committed other offsets of the same group.
//
// EndTxn is answered once the outcome is durable in __transaction_state, before the markers are
// written (Kafka's TransactionMarkerChannelManager writes them after), so the tests wait for the
// read_committed latest offset (the LSO, which passes a transaction only with its marker) to
// reach its end. Then they append a trailing record (a plain, non-transactional send) to every
// partition: a consumer handed it has read past everything before it, so the "never sees"
// assertions wait for it rather than for time to pass.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';

import { startBroker, waitUntil, withBrokerLog } from './broker.mjs';

// CommonJS packages resolved through NODE_PATH (target/node/node_modules, set by scripts/test).
const require = createRequire(import.meta.url);
const { Kafka, logLevel } = require('kafkajs');

const TEST_TIMEOUT_MS = 90_000;
const WAIT_MS = 30_000;

// kafkajs's log at ERROR, less the CONCURRENT_TRANSACTIONS answers it logs before retrying
// them (a transaction begun while the previous one's markers are being written; see test 3).
const CONCURRENT = 'another concurrent operation on the same transaction';
const logCreator = () => ({ namespace, level, log }) => {
  if (`${log.message} ${log.error ?? ''}`.includes(CONCURRENT)) return;
  console.error(JSON.stringify({ level, namespace, ...log }));
};

const byPosition = (a, b) => a.partition - b.partition || a.offset - b.offset;

/** `counts[p]` values for partition p, as kafkajs messages with an explicit partition. */
function messagesFor(tag, counts) {
  return counts.flatMap((count, partition) =>
    Array.from({ length: count }, (_, i) => ({ partition, value: `${tag}-p${partition}-${i}` })));
}

/** How a consumer that reads `messages` at offsets `firstOffset[p]`.. of each partition sees them. */
function expectedAt(messages, firstOffset) {
  const next = [...firstOffset];
  return messages.map((m) => ({ partition: m.partition, offset: next[m.partition]++, value: m.value }));
}

describe('kafkajs transactions', () => {
  let broker;
  let kafka;
  let admin;
  const clients = []; // every kafkajs producer and consumer made here, disconnected after the tests

  before(async () => {
    // Small internal topics (instead of 50 partitions each) keep the start cheap; the consumers'
    // groups rebalance at once instead of after Kafka's 3 s initial delay.
    broker = await startBroker({ overrides: { 'group.initial.rebalance.delay.ms': '0',
      'offsets.topic.num.partitions': '3', 'transaction.state.log.num.partitions': '3' } });
    kafka = new Kafka({ clientId: 'runnel-js-txn', brokers: [broker.bootstrap], logLevel: logLevel.ERROR, logCreator,
      retry: { retries: 5, initialRetryTime: 100 } });
    admin = kafka.admin();
    await admin.connect();
  });

  after(async () => {
    await Promise.allSettled(clients.map((c) => c.disconnect()));
    await admin?.disconnect();
    await broker?.kill();
  });

  function client(c) {
    clients.push(c);
    return c;
  }

  async function createTopic(topic, numPartitions) {
    const created = await admin.createTopics({ topics: [{ topic, numPartitions, replicationFactor: 1 }], waitForLeaders: true });
    assert.equal(created, true, `createTopics(${topic}) returned ${created}`);
  }

  async function transactionalProducer(transactionalId) {
    const producer = client(kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 }));
    await producer.connect();
    return producer;
  }

  /** One plain (non-transactional) record per partition; returns each one's offset. */
  async function sendTail(topic, partitions) {
    const producer = client(kafka.producer());
    await producer.connect();
    const results = await producer.send({ topic, acks: -1,
      messages: Array.from({ length: partitions }, (_, partition) => ({ partition, value: `tail-p${partition}` })) });
    await producer.disconnect();
    return Object.fromEntries(results.map((r) => [r.partition, Number(r.baseOffset)]));
  }

  /** Latest offsets by partition as kafkajs's admin reads them: ListOffsets, read_committed (the LSO). */
  async function latestOffsets(topic) {
    const offsets = await admin.fetchTopicOffsets(topic);
    return Object.fromEntries(offsets.map((o) => [o.partition, Number(o.high)]));
  }

  /** The group's committed offsets of `topic` by partition (OffsetFetch; -1 when none). */
  async function groupOffsets(groupId, topic) {
    const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] });
    assert.equal(entry.topic, topic);
    return Object.fromEntries(entry.partitions.map((p) => [p.partition, Number(p.offset)]));
  }

  /**
   * A consumer of its own group reading `topic` from the beginning, recording every message
   * kafkajs hands it (partition, offset, value) and the high watermark of each partition's last
   * Fetch. The first JoinGroup after __consumer_offsets is created can be answered
   * COORDINATOR_LOAD_IN_PROGRESS, as Kafka's is while the partition loads; kafkajs's consumer then
   * logs a "Crash" and restarts itself (a retriable error), which does not fail the test.
   */
  async function reader(topic, readUncommitted) {
    const groupId = `${topic}-${readUncommitted ? 'read-uncommitted' : 'read-committed'}`;
    const consumer = client(kafka.consumer({ groupId, readUncommitted, maxWaitTimeInMs: 200, retry: { retries: 10 } }));
    const state = { seen: [], highWatermarks: {} };
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          state.seen.push({ partition: batch.partition, offset: Number(m.offset), value: m.value.toString() });
        }
        state.highWatermarks[batch.partition] = Number(batch.highWatermark);
      },
    });
    state.sawTails = (partitions) => Array.from({ length: partitions },
      (_, p) => state.seen.some((r) => r.partition === p && r.value === `tail-p${p}`)).every(Boolean);
    state.sorted = () => [...state.seen].sort(byPosition);
    return state;
  }

  it('a committed transaction: read_committed sees exactly its records; the COMMIT marker takes an offset',
    { timeout: TEST_TIMEOUT_MS }, () => withBrokerLog(broker, async () => {
      const topic = 'kjs-txn-commit';
      const counts = [5, 3];
      await createTopic(topic, counts.length);
      const producer = await transactionalProducer('kjs-commit-app');

      const txn = await producer.transaction();
      const records = messagesFor('committed', counts);
      const results = await txn.send({ topic, acks: -1, messages: records });
      assert.deepEqual(results.map((r) => [r.partition, r.errorCode, r.baseOffset]).sort(),
        [[0, 0, '0'], [1, 0, '0']]);
      // Open: the first unstable offset, 0, is the last stable offset on both partitions.
      assert.deepEqual(await latestOffsets(topic), { 0: 0, 1: 0 }, 'latest read_committed offsets of an open transaction');
      await txn.commit();

      // The COMMIT markers: N records and one marker per partition. EndTxn is answered once the
      // commit is decided, before the markers are written (in Kafka too), hence the wait.
      const afterMarkers = { 0: counts[0] + 1, 1: counts[1] + 1 };
      await waitUntil(async () => JSON.stringify(await latestOffsets(topic)) === JSON.stringify(afterMarkers),
        WAIT_MS, `latest offsets ${JSON.stringify(afterMarkers)} (records and a COMMIT marker)`);
      const tails = await sendTail(topic, counts.length);
      assert.deepEqual(tails, afterMarkers, 'the record after a committed transaction of N records is at N+1');

      const committed = await reader(topic, false);
      await waitUntil(() => committed.sawTails(counts.length), WAIT_MS, 'the read_committed consumer to reach the tails');
      const expected = [
        ...expectedAt(records, [0, 0]),
        ...counts.map((n, partition) => ({ partition, offset: n + 1, value: `tail-p${partition}` })),
      ].sort(byPosition);
      assert.deepEqual(committed.sorted(), expected, 'read_committed: the committed records, then the tails');
      assert.deepEqual(committed.highWatermarks, { 0: counts[0] + 2, 1: counts[1] + 2 },
        'Fetch high watermarks (records, marker, tail)');
    }));

  it('an aborted transaction: read_uncommitted sees it, read_committed never does; markers reach neither',
    { timeout: TEST_TIMEOUT_MS }, () => withBrokerLog(broker, async () => {
      const topic = 'kjs-txn-abort';
      const abortedCounts = [4, 2];
      const committedCounts = [3, 3];
      const partitions = abortedCounts.length;
      await createTopic(topic, partitions);
      const producer = await transactionalProducer('kjs-abort-app');

      const aborted = messagesFor('aborted', abortedCounts);
      const first = await producer.transaction();
      await first.send({ topic, acks: -1, messages: aborted });
      await first.abort();

      const committed = messagesFor('committed', committedCounts);
      const second = await producer.transaction();
      await second.send({ topic, acks: -1, messages: committed });
      await second.commit();

      // Per partition: aborted records, ABORT marker, committed records, COMMIT marker, tail.
      const abortMarker = abortedCounts;
      const commitMarker = abortedCounts.map((a, p) => a + 1 + committedCounts[p]);
      const tailOffset = commitMarker.map((m) => m + 1);
      // EndTxn is answered before the markers are written (Kafka's too): a record sent before
      // the COMMIT marker is in would take its place, so wait for the stable end past it.
      await waitUntil(async () => JSON.stringify(await latestOffsets(topic)) === JSON.stringify({ ...tailOffset }),
        WAIT_MS, `latest offsets ${JSON.stringify({ ...tailOffset })} (both transactions and their markers)`);
      const tails = await sendTail(topic, partitions);
      assert.deepEqual(tails, { ...tailOffset }, 'tail offsets: after both transactions and their markers');

      const [readCommitted, readUncommitted] = await Promise.all([reader(topic, false), reader(topic, true)]);
      await waitUntil(() => readCommitted.sawTails(partitions) && readUncommitted.sawTails(partitions),
        WAIT_MS, 'both consumers to reach the tails');

      const committedView = expectedAt(committed, abortedCounts.map((a) => a + 1));
      const tailView = tailOffset.map((offset, partition) => ({ partition, offset, value: `tail-p${partition}` }));
      assert.deepEqual(readCommitted.sorted(), [...committedView, ...tailView].sort(byPosition),
        'read_committed: no aborted record, the committed ones and the tails');
      assert.deepEqual(readUncommitted.sorted(),
        [...expectedAt(aborted, [0, 0]), ...committedView, ...tailView].sort(byPosition),
        'read_uncommitted: the aborted records too');

      // Every offset below the high watermark is a record read_uncommitted was handed or a marker.
      for (let p = 0; p < partitions; p += 1) {
        const markers = [abortMarker[p], commitMarker[p]];
        for (const consumer of [readCommitted, readUncommitted]) {
          assert.ok(consumer.seen.every((r) => r.partition !== p || !markers.includes(r.offset)),
            `partition ${p}: a message at a marker's offset (${markers})`);
          assert.equal(consumer.highWatermarks[p], tailOffset[p] + 1, `partition ${p}: Fetch high watermark`);
        }
        const offsets = readUncommitted.seen.filter((r) => r.partition === p).map((r) => r.offset);
        const all = Array.from({ length: tailOffset[p] + 1 }, (_, o) => o);
        assert.deepEqual([...offsets, ...markers].sort((x, y) => x - y), all, `partition ${p}: records and markers fill the log`);
      }
    }));

  it('sendOffsets: committed with the transaction, never when it aborts', { timeout: TEST_TIMEOUT_MS },
    () => withBrokerLog(broker, async () => {
      const source = 'kjs-txn-source'; // the topic whose consumption the offsets record
      const sink = 'kjs-txn-sink'; // the topic the transactions write to
      const groupId = 'kjs-txn-eos-group';
      await createTopic(source, 2);
      await createTopic(sink, 1);
      const producer = await transactionalProducer('kjs-eos-app');
      const offsetsOf = (partitions) => ({ consumerGroupId: groupId, topics: [{ topic: source, partitions }] });
      assert.deepEqual(await groupOffsets(groupId, source), { 0: -1, 1: -1 }, 'a new group has no offsets');

      // 1. Records and offsets, committed: the offsets are pending until the commit.
      const first = await producer.transaction();
      await first.send({ topic: sink, acks: -1, messages: [{ partition: 0, value: 'out-1' }] });
      await first.sendOffsets(offsetsOf([{ partition: 0, offset: '5' }]));
      assert.deepEqual(await groupOffsets(groupId, source), { 0: -1, 1: -1 }, 'offsets of an open transaction');
      await first.commit();
      await waitUntil(async () => (await groupOffsets(groupId, source))[0] === 5, WAIT_MS,
        'the committed transaction\'s offset 5 to be the group\'s');
      assert.deepEqual(await groupOffsets(groupId, source), { 0: 5, 1: -1 });

      // 2. Records and offsets, aborted: never committed.
      const second = await producer.transaction();
      await second.send({ topic: sink, acks: -1, messages: [{ partition: 0, value: 'out-2' }] });
      await second.sendOffsets(offsetsOf([{ partition: 0, offset: '9' }, { partition: 1, offset: '3' }]));
      assert.deepEqual(await groupOffsets(groupId, source), { 0: 5, 1: -1 }, 'offsets of an open transaction');
      await second.abort();
      assert.deepEqual(await groupOffsets(groupId, source), { 0: 5, 1: -1 }, 'offsets of an aborted transaction');

      // 3. Offsets only, committed. The coordinator lets it start only once the abort's markers
      // are written (until then AddOffsetsToTxn is CONCURRENT_TRANSACTIONS), and both go to the
      // group's __consumer_offsets partition in order: once its offset shows, the abort is final.
      // kafkajs retries CONCURRENT_TRANSACTIONS for AddPartitionsToTxn (inside send) but not for
      // AddOffsetsToTxn (tulios/kafkajs#430), so a transaction that begins with sendOffsets
      // retries it here, as a kafkajs application has to.
      const third = await producer.transaction();
      await waitUntil(async () => {
        try {
          await third.sendOffsets(offsetsOf([{ partition: 1, offset: '7' }]));
          return true;
        } catch (error) {
          if (error.type === 'CONCURRENT_TRANSACTIONS') return false;
          throw error;
        }
      }, WAIT_MS, 'AddOffsetsToTxn to be accepted once the abort has completed');
      await third.commit();
      await waitUntil(async () => (await groupOffsets(groupId, source))[1] === 7, WAIT_MS,
        'the third transaction\'s offset 7 to be the group\'s');
      assert.deepEqual(await groupOffsets(groupId, source), { 0: 5, 1: 7 }, 'the aborted offsets 9 and 3 were not committed');

      // The sink holds both records and both markers (read_committed latest offset: all stable).
      await waitUntil(async () => (await latestOffsets(sink))[0] === 4, WAIT_MS, 'the sink\'s latest offset 4');
    }));
});
