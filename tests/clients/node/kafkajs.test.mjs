// kafkajs 2.2.4 against Runnel (node:test).
//
// kafkajs has no assign-only consumer: its consumer always joins a consumer group (tested in
// kafkajs_groups.test.mjs). Here records produced with kafkajs are checked with kafkajs's admin
// (`fetchTopicOffsets`: high watermarks) and read back with kcat (`-C -e -J`), a librdkafka
// client that consumes by assignment.
//
// Codecs: none and gzip are built into kafkajs; snappy (kafkajs-snappy, pure JS) and lz4
// (kafkajs-lz4, native `lz4` addon) are optional packages and their tests skip when the package
// cannot be loaded. zstd is not tested with kafkajs: @kafkajs/zstd needs the native `cppzst`
// addon, which does not compile with Node 20's headers here.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';

import { kcatConsumeAll, startBroker, waitUntil, withBrokerLog } from './broker.mjs';

// CommonJS packages resolved through NODE_PATH (target/node/node_modules, set by scripts/test).
const require = createRequire(import.meta.url);
const { Kafka, CompressionTypes, CompressionCodecs, Partitioners, logLevel } = require('kafkajs');

const TEST_TIMEOUT_MS = 120_000;
const WAIT_MS = 30_000;

function optionalCodec(type, load) {
  try {
    CompressionCodecs[type] = load();
    return null;
  } catch (err) {
    return `codec package not loadable: ${err.message.split('\n')[0]}`;
  }
}

const CODECS = [
  { name: 'none', type: CompressionTypes.None, skip: null },
  { name: 'gzip', type: CompressionTypes.GZIP, skip: null },
  { name: 'snappy', type: CompressionTypes.Snappy, skip: optionalCodec(CompressionTypes.Snappy, () => require('kafkajs-snappy')) },
  { name: 'lz4', type: CompressionTypes.LZ4, skip: optionalCodec(CompressionTypes.LZ4, () => new (require('kafkajs-lz4'))().codec) },
];

/** Keyed and unkeyed messages with headers (one header repeated) and CreateTimes in the past. */
function makeMessages(tag, keyed = 12, unkeyed = 5) {
  const base = Date.now() - 3_600_000;
  return Array.from({ length: keyed + unkeyed }, (_, i) => ({
    key: i < keyed ? `key-${i % 4}` : null,
    value: `${tag} value ${i}${i === 1 ? ' compressible'.repeat(5000) : ''}`,
    headers: { idx: String(i), tag, dup: ['first', 'second'] },
    timestamp: String(base + i),
  }));
}

/** A message as kcat -J shows it, for comparison with what was sent. */
function expectedView(m) {
  const headers = Object.entries(m.headers).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).flatMap((x) => [k, x]));
  return { key: m.key, value: m.value, headers, ts: Number(m.timestamp) };
}

function storedView(r) {
  return { key: r.key, value: r.payload, headers: r.headers ?? [], ts: r.ts };
}

const byContent = (a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1);

function assertOffsetsContiguous(records) {
  const byPartition = new Map();
  for (const r of records) byPartition.set(r.partition, [...(byPartition.get(r.partition) ?? []), r]);
  for (const [partition, rs] of byPartition) {
    assert.deepEqual(rs.map((r) => r.offset), rs.map((_, i) => i), `partition ${partition} offsets`);
  }
}

function assertSameKeySamePartition(records) {
  const partitionOf = new Map();
  for (const r of records.filter((x) => x.key !== null)) {
    if (!partitionOf.has(r.key)) partitionOf.set(r.key, r.partition);
    assert.equal(r.partition, partitionOf.get(r.key), `key ${r.key} in two partitions`);
  }
}

describe('kafkajs', () => {
  let broker;
  let kafka;
  let admin;

  before(async () => {
    broker = await startBroker();
    kafka = new Kafka({ clientId: 'runnel-node-tests', brokers: [broker.bootstrap], logLevel: logLevel.ERROR,
      retry: { retries: 5, initialRetryTime: 100 } });
    admin = kafka.admin();
    await admin.connect();
  });

  after(async () => {
    await admin?.disconnect();
    await broker?.kill();
  });

  async function createTopic(topic, numPartitions) {
    const created = await admin.createTopics({ topics: [{ topic, numPartitions, replicationFactor: 1 }], waitForLeaders: true });
    assert.equal(created, true, `createTopics(${topic}) returned ${created}`);
  }

  /** Send in one call, then check watermarks (kafkajs admin) and content (kcat). */
  async function sendAndVerify(topic, partitions, messages, producerConfig, compression) {
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, ...producerConfig });
    await producer.connect();
    let results;
    try {
      results = await producer.send({ topic, acks: -1, compression, messages });
    } finally {
      await producer.disconnect();
    }
    for (const r of results) {
      assert.equal(r.errorCode, 0, `partition ${r.partition} error ${r.errorCode}`);
      assert.equal(r.baseOffset, '0', `first batch of partition ${r.partition} starts at 0`);
    }

    const offsets = await admin.fetchTopicOffsets(topic);
    assert.equal(offsets.length, partitions);
    assert.equal(offsets.reduce((sum, o) => sum + Number(o.high), 0), messages.length, 'sum of high watermarks');
    assert.ok(offsets.every((o) => o.low === '0'), `low watermarks ${JSON.stringify(offsets)}`);

    const stored = await waitUntil(() => {
      const records = kcatConsumeAll(broker.bootstrap, topic);
      return records.length >= messages.length && records;
    }, WAIT_MS, `kcat to read ${messages.length} records of ${topic}`);
    assert.ok(stored.every((r) => r.tstype === 'create'), 'all timestamps are CreateTime');
    assert.deepEqual(stored.map(storedView).sort(byContent), messages.map(expectedView).sort(byContent));
    assertOffsetsContiguous(stored);
    assertSameKeySamePartition(stored);
    for (const o of offsets) {
      const inPartition = stored.filter((r) => r.partition === o.partition);
      assert.equal(inPartition.length, Number(o.high), `partition ${o.partition}: high watermark vs records`);
      // Within a partition, records keep the order they were sent in.
      const sentOrder = messages.map((m) => m.value).filter((v) => inPartition.some((r) => r.payload === v));
      assert.deepEqual(inPartition.map((r) => r.payload), sentOrder);
    }
  }

  for (const codec of CODECS) {
    it(`sends keyed and unkeyed records with headers, ${codec.name}`, { timeout: TEST_TIMEOUT_MS, skip: codec.skip ?? false },
      () => withBrokerLog(broker, async () => {
        const topic = `kafkajs-round-trip-${codec.name}`;
        await createTopic(topic, 3);
        await sendAndVerify(topic, 3, makeMessages(topic), {}, codec.type);
      }));
  }

  it('idempotent producer (InitProducerId) sends once per record', { timeout: TEST_TIMEOUT_MS },
    () => withBrokerLog(broker, async () => {
      const topic = 'kafkajs-idempotent';
      await createTopic(topic, 2);
      await sendAndVerify(topic, 2, makeMessages(topic), { idempotent: true, maxInFlightRequests: 1 },
        CompressionTypes.GZIP);
    }));

  it('admin: metadata, create existing, delete', { timeout: TEST_TIMEOUT_MS },
    () => withBrokerLog(broker, async () => {
      const topic = 'kafkajs-admin';
      await createTopic(topic, 3);

      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      assert.equal(topics.length, 1);
      assert.deepEqual(topics[0].partitions.map((p) => p.partitionId).sort(), [0, 1, 2]);
      const { brokers } = await admin.describeCluster();
      assert.deepEqual(brokers.map((b) => `${b.host}:${b.port}`), [broker.bootstrap]);
      for (const p of topics[0].partitions) {
        assert.equal(p.partitionErrorCode, 0);
        assert.equal(p.leader, brokers[0].nodeId);
        assert.deepEqual(p.replicas, [brokers[0].nodeId]);
      }

      // kafkajs resolves false (not an error) when every topic already existed.
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] }), false);

      await admin.deleteTopics({ topics: [topic], timeout: WAIT_MS });
      await waitUntil(async () => !(await admin.listTopics()).includes(topic), WAIT_MS, `${topic} to be deleted`);
    }));

  it('admin: createPartitions grows a topic; a smaller count is refused', { timeout: TEST_TIMEOUT_MS },
    () => withBrokerLog(broker, async () => {
      const topic = 'kafkajs-grow';
      await createTopic(topic, 2);
      await admin.createPartitions({ topicPartitions: [{ topic, count: 4 }] });
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      assert.deepEqual(topics[0].partitions.map((p) => p.partitionId).sort(), [0, 1, 2, 3]);
      await assert.rejects(admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] }),
        (error) => error.type === 'INVALID_PARTITIONS' || error.errors?.some((e) => e.type === 'INVALID_PARTITIONS'));

      const producer = kafka.producer();
      await producer.connect();
      try {
        const [result] = await producer.send({ topic, acks: -1, messages: [{ value: 'new', partition: 3 }] });
        assert.deepEqual([result.partition, result.errorCode, result.baseOffset], [3, 0, '0']);
      } finally {
        await producer.disconnect();
      }
    }));
});
