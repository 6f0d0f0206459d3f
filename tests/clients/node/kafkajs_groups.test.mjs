// kafkajs 2.2.4 consumer groups against Runnel (node:test): two group members split a topic's
// partitions, read every record once and commit; when one disconnects (LeaveGroup) the other
// takes over its partitions; the committed offsets are what kafkajs's admin reads back; a new
// member of the group resumes after them.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';

import { startBroker, waitUntil, withBrokerLog } from './broker.mjs';

const require = createRequire(import.meta.url);
const { Kafka, logLevel } = require('kafkajs');

const TEST_TIMEOUT_MS = 120_000;
const WAIT_MS = 60_000;
const TOPIC = 'js-groups';
const GROUP = 'js-readers';

describe('kafkajs consumer groups', () => {
  let broker;
  let kafka;

  before(async () => {
    broker = await startBroker({
      overrides: { 'group.initial.rebalance.delay.ms': '0', 'offsets.topic.num.partitions': '5' },
    });
    kafka = new Kafka({ clientId: 'runnel-js-groups', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING });
  });

  after(async () => {
    await broker?.kill();
  });

  /** A group member recording what it reads and which partitions it holds. */
  async function member() {
    const consumer = kafka.consumer({ groupId: GROUP, sessionTimeout: 6000, heartbeatInterval: 500, retry: { retries: 10 } });
    const state = { consumer, seen: [], assigned: new Set() };
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      state.assigned = new Set(event.payload.memberAssignment[TOPIC] ?? []);
    });
    await consumer.connect();
    await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
    await consumer.run({
      autoCommit: true,
      autoCommitInterval: 100,
      eachMessage: async ({ partition, message }) => {
        state.seen.push({ partition, offset: Number(message.offset), value: message.value.toString() });
      },
    });
    return state;
  }

  it('two members split the partitions, read once, commit, and hand over on leave', { timeout: TEST_TIMEOUT_MS },
    () => withBrokerLog(broker, async () => {
      const admin = kafka.admin();
      await admin.connect();
      await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 4 }], waitForLeaders: true });
      const a = await member();
      const b = await member();
      await waitUntil(() => a.assigned.size === 2 && b.assigned.size === 2, WAIT_MS, 'two partitions per member');
      assert.deepEqual(new Set([...a.assigned, ...b.assigned]), new Set([0, 1, 2, 3]));

      const producer = kafka.producer();
      await producer.connect();
      const messages = Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: `js-${i}` }));
      await producer.send({ topic: TOPIC, acks: -1, messages });
      await waitUntil(() => a.seen.length + b.seen.length >= 40, WAIT_MS, 'all 40 records');
      const values = [...a.seen, ...b.seen].map((r) => r.value).sort();
      assert.deepEqual(values, messages.map((m) => m.value).sort(), 'every record read exactly once');

      const ends = await admin.fetchTopicOffsets(TOPIC);
      const committedAtEnd = async () => {
        const [committed] = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
        return committed.partitions.every((p) => p.offset === ends.find((e) => e.partition === p.partition).offset);
      };
      await waitUntil(committedAtEnd, WAIT_MS, 'the commits to reach the end offsets');
      const described = await admin.describeGroups([GROUP]);
      assert.equal(described.groups[0].state, 'Stable');
      assert.equal(described.groups[0].members.length, 2);
      const listed = await admin.listGroups();
      assert.ok(listed.groups.some((g) => g.groupId === GROUP));

      await b.consumer.disconnect();
      await waitUntil(() => a.assigned.size === 4, WAIT_MS, 'the other member to take over all partitions');
      await a.consumer.disconnect();

      // A new member resumes after the commits: only the records produced now arrive.
      await producer.send({ topic: TOPIC, acks: -1, messages: [{ key: 'k', value: 'later' }] });
      const c = await member();
      await waitUntil(() => c.seen.length >= 1, WAIT_MS, 'the new record');
      assert.deepEqual(c.seen.map((r) => r.value), ['later']);
      await c.consumer.disconnect();

      // Empty now: the group can be deleted.
      await admin.deleteGroups([GROUP]);
      const after = await admin.listGroups();
      assert.ok(!after.groups.some((g) => g.groupId === GROUP));
      await producer.disconnect();
      await admin.disconnect();
    }));
});
