// kafkajs against a cluster of three combined nodes (`runnel dev-cluster --nodes 3`): it
// bootstraps from one node, learns all three brokers, creates a topic through any broker (the
// change carried to the active controller), produces to every partition's leader and consumes
// as a group whose coordinator is the leader of its `__consumer_offsets` partition.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';

import { startDevCluster, waitUntil } from './broker.mjs';

const require = createRequire(import.meta.url);
const { Kafka, Partitioners, logLevel } = require('kafkajs');

const TEST_TIMEOUT_MS = 120_000;
const WAIT_MS = 30_000;

describe('kafkajs on a three-node cluster', () => {
  let cluster;
  before(async () => {
    cluster = await startDevCluster({ nodes: 3 });
  });
  after(async () => {
    if (cluster) await cluster.stop();
  });

  async function withLog(fn) {
    try {
      return await fn();
    } catch (err) {
      err.message += `\n--- dev-cluster logs ---\n${cluster.logTail()}`;
      throw err;
    }
  }

  it('sees three brokers, spreads a topic over them, produces and consumes as a group', { timeout: TEST_TIMEOUT_MS }, () => withLog(async () => {
    // Bootstrapping from the last node only: the others are learned from Metadata.
    const kafka = new Kafka({ clientId: 'runnel-cluster-test', brokers: [cluster.bootstrap[2]], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    const topic = 'kafkajs-spread';
    try {
      const described = await admin.describeCluster();
      assert.deepEqual(described.brokers.map((b) => b.nodeId).sort(), [1, 2, 3]);
      await admin.createTopics({ topics: [{ topic, numPartitions: 6 }], waitForLeaders: true });
      const leaders = await waitUntil(async () => {
        const [meta] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
        const ids = meta.partitions.map((p) => p.leader);
        return new Set(ids).size === 3 ? ids : null;
      }, WAIT_MS, 'the partitions to be led by all three brokers');
      assert.equal(leaders.length, 6);
    } finally {
      await admin.disconnect();
    }

    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const values = Array.from({ length: 60 }, (_, i) => `value-${i}`);
    try {
      await producer.send({ topic, acks: -1, messages: values.map((value, i) => ({ value, partition: i % 6 })) });
    } finally {
      await producer.disconnect();
    }

    const consumer = kafka.consumer({ groupId: 'kafkajs-cluster-readers' });
    await consumer.connect();
    const seen = [];
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({ eachMessage: async ({ message }) => { seen.push(message.value.toString()); } });
      await waitUntil(() => seen.length >= values.length, WAIT_MS, `${values.length} records consumed`);
    } finally {
      await consumer.disconnect();
    }
    assert.deepEqual([...seen].sort(), [...values].sort());
  }));
});
