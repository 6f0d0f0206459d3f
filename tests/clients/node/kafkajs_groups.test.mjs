// kafkajs 2.2.4 consumer groups against Runnel (node:test): the acceptance scenario that
// test_groups_confluent.py runs with librdkafka.
//  1. Three members of one group share a 6-partition topic, two partitions each, read every
//     record once between them and commit; kafkajs's admin reads the commits back (equal to the
//     end offsets), describes the group (Stable, 3 members) and lists it.
//  2. A fourth member joins: the six partitions are spread [1, 1, 2, 2].
//  3. A member disconnects cleanly (LeaveGroup): its partitions move within the session timeout.
//  4. A member killed with SIGKILL (its own process, group_member.mjs) loses its partitions to the
//     others once its session times out, and drops out of the group.
// Then a new member resumes after the commits, and the group, empty, can be deleted.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { startBroker, waitUntil, withBrokerLog } from './broker.mjs';

const require = createRequire(import.meta.url);
const { AssignerProtocol, Kafka, logLevel } = require('kafkajs');

const TEST_TIMEOUT_MS = 180_000;
const WAIT_MS = 60_000;
const TOPIC = 'js-groups';
const GROUP = 'js-readers';
const PARTITIONS = 6;
const SESSION_TIMEOUT_MS = 6000;
const MEMBER_SCRIPT = fileURLToPath(new URL('./group_member.mjs', import.meta.url));

// kafkajs heartbeats only between fetches, so it learns of a rebalance after its current fetch
// returns: maxWaitTimeInMs 500 (default 5000) lets it react about as often as it heartbeats.
// group_member.mjs uses the same settings.
const CONSUMER_CONFIG = {
  groupId: GROUP,
  sessionTimeout: SESSION_TIMEOUT_MS,
  heartbeatInterval: 500,
  maxWaitTimeInMs: 500,
  retry: { retries: 10 },
};

const sorted = (values) => [...values].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
const sameSet = (xs, ys) => xs.length === ys.size && xs.every((x) => ys.has(x));

describe('kafkajs consumer groups', () => {
  let broker;
  let kafka;
  const clients = []; // every kafkajs client made here, disconnected after the tests
  const processes = []; // every group_member.mjs process, SIGKILLed after the tests

  before(async () => {
    broker = await startBroker({
      overrides: { 'group.initial.rebalance.delay.ms': '0', 'offsets.topic.num.partitions': '5' },
    });
    kafka = new Kafka({ clientId: 'runnel-js-groups', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING });
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.kill()));
    await Promise.allSettled(clients.map((c) => c.disconnect()));
    await broker?.kill();
  });

  function client(c) {
    clients.push(c);
    return c;
  }

  /** An in-process group member recording what it reads and which partitions it holds. */
  async function member() {
    const consumer = client(kafka.consumer(CONSUMER_CONFIG));
    const state = { consumer, memberId: null, seen: [], assigned: new Set(), check() {} };
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      state.memberId = event.payload.memberId;
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

  /** A group member in its own process (group_member.mjs), following its JSON-line reports. */
  function processMember() {
    const child = spawn(process.execPath, [MEMBER_SCRIPT, broker.bootstrap, GROUP, TOPIC, String(SESSION_TIMEOUT_MS)],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (error) => resolve({ error }));
    });
    const state = {
      child, memberId: null, seen: [], assigned: new Set(), crashes: [], stderr: '', killed: false,
      running: () => child.exitCode === null && child.signalCode === null,
      async kill() {
        state.killed = true;
        if (state.running()) child.kill('SIGKILL');
        await exited;
      },
      /** Throw if the process died without being killed here (with its stderr). */
      check() {
        if (!state.killed && !state.running()) {
          throw new Error(`group_member.mjs exited (${child.exitCode ?? child.signalCode}); `
            + `crashes: ${JSON.stringify(state.crashes)}; stderr:\n${state.stderr}`);
        }
      },
    };
    child.stdin.on('error', () => {}); // EPIPE once it is dead
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => { state.stderr += chunk; });
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const report = JSON.parse(line);
      if (report.event === 'join') {
        state.memberId = report.memberId;
        state.assigned = new Set(report.partitions);
      } else if (report.event === 'message') {
        state.seen.push({ partition: report.partition, offset: report.offset, value: report.value });
      } else if (report.event === 'crash') {
        state.crashes.push(report.error);
      }
    });
    processes.push(state);
    return state;
  }

  /** The group as the coordinator describes it: state and each member's assigned partitions. */
  async function describeGroup(admin) {
    const { groups: [group] } = await admin.describeGroups([GROUP]);
    const assignments = new Map(group.members.map((m) => {
      const decoded = m.memberAssignment.length ? AssignerProtocol.MemberAssignment.decode(m.memberAssignment) : null;
      return [m.memberId, decoded?.assignment[TOPIC] ?? []];
    }));
    return { state: group.state, assignments };
  }

  /**
   * True once `members` split the topic's partitions into `sizes` (disjoint, covering all), as
   * their own GROUP_JOIN reports say, and the coordinator describes the same: Stable, exactly
   * these members, each with these partitions (so no member reports a stale generation).
   */
  async function splitInto(admin, members, sizes) {
    for (const m of members) m.check();
    const held = members.map((m) => m.assigned);
    const covered = new Set(held.flatMap((s) => [...s]));
    const heldSizes = held.map((s) => s.size).sort((x, y) => x - y);
    if (covered.size !== PARTITIONS || JSON.stringify(heldSizes) !== JSON.stringify(sizes)) return false;
    const group = await describeGroup(admin);
    return group.state === 'Stable' && group.assignments.size === members.length
      && members.every((m) => group.assignments.has(m.memberId) && sameSet(group.assignments.get(m.memberId), m.assigned));
  }

  it('members share the partitions, read once, commit, rebalance on join, leave and SIGKILL',
    { timeout: TEST_TIMEOUT_MS }, (t) => withBrokerLog(broker, async () => {
      const admin = client(kafka.admin());
      await admin.connect();
      await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: PARTITIONS }], waitForLeaders: true });

      // 1. Three members: two partitions each.
      const a = await member();
      const b = await member();
      const c = await member();
      await waitUntil(() => splitInto(admin, [a, b, c], [2, 2, 2]), WAIT_MS, 'two partitions for each of three members');

      // 60 records, 10 per partition, produced after the split: each is read once, by the member
      // holding its partition.
      const producer = client(kafka.producer());
      await producer.connect();
      const messages = Array.from({ length: 60 }, (_, i) => ({ key: `k${i}`, value: `v-${i}`, partition: i % PARTITIONS }));
      await producer.send({ topic: TOPIC, acks: -1, messages });
      const readByABC = () => [...a.seen, ...b.seen, ...c.seen];
      await waitUntil(() => readByABC().length >= 60, WAIT_MS, 'all 60 records');
      assert.deepEqual(sorted(readByABC().map((r) => r.value)), sorted(messages.map((m) => m.value)),
        'every record read exactly once');
      for (const m of [a, b, c]) {
        assert.ok(m.seen.every((r) => m.assigned.has(r.partition)), 'a member read a partition it does not hold');
      }

      // The commits (kafkajs auto-commit) reach the end offsets, as the admin reads them back.
      const ends = await admin.fetchTopicOffsets(TOPIC);
      assert.deepEqual(ends.map((e) => [e.partition, e.offset]).sort((x, y) => x[0] - y[0]),
        Array.from({ length: PARTITIONS }, (_, p) => [p, '10']));
      const committed = async () => {
        const [{ partitions }] = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
        return new Map(partitions.map((p) => [p.partition, p.offset]));
      };
      await waitUntil(async () => {
        const offsets = await committed();
        return ends.every((e) => offsets.get(e.partition) === e.offset);
      }, WAIT_MS, 'the commits to reach the end offsets');
      assert.equal(readByABC().length, 60, 'a record was read twice');

      const described = await admin.describeGroups([GROUP]);
      assert.equal(described.groups[0].state, 'Stable');
      assert.equal(described.groups[0].members.length, 3);
      assert.equal(described.groups[0].protocolType, 'consumer');
      const listed = await admin.listGroups();
      assert.ok(listed.groups.some((g) => g.groupId === GROUP && g.protocolType === 'consumer'), 'group not listed');

      // 2. A fourth member (in its own process, killed in step 4) joins: [1, 1, 2, 2].
      const d = processMember();
      await waitUntil(() => splitInto(admin, [a, b, c, d], [1, 1, 2, 2]), WAIT_MS, 'a rebalance over four members');

      // 3. A clean disconnect (LeaveGroup) hands its partitions over without waiting for its
      // session to time out.
      const leftAt = Date.now();
      await c.consumer.disconnect();
      await waitUntil(() => splitInto(admin, [a, b, d], [2, 2, 2]), Math.max(0, SESSION_TIMEOUT_MS - (Date.now() - leftAt)),
        'the disconnected member\'s partitions to move within the session timeout');
      t.diagnostic(`clean leave: partitions moved ${Date.now() - leftAt} ms after disconnect() began`);

      // 4. SIGKILL: no LeaveGroup; the coordinator evicts the member when its session times out
      // (not when its connection drops), and the remaining two get three partitions each.
      const killedAt = Date.now();
      await d.kill();
      await waitUntil(() => splitInto(admin, [a, b], [3, 3]), SESSION_TIMEOUT_MS + 30_000,
        'the killed member\'s partitions to move after its session timeout');
      const movedAfter = Date.now() - killedAt;
      t.diagnostic(`SIGKILL: partitions moved ${movedAfter} ms after the kill`);
      // Its last heartbeat was at most a few heartbeat intervals before the kill.
      assert.ok(movedAfter >= SESSION_TIMEOUT_MS - 3000, `partitions moved ${movedAfter} ms after the kill`);
      const reduced = await admin.describeGroups([GROUP]);
      assert.equal(reduced.groups[0].members.length, 2);
      assert.equal(reduced.groups[0].state, 'Stable');

      // Partitions handed over started from the commits: nothing was read twice across the
      // rebalances (the fourth member, joining after the commits, read nothing).
      assert.deepEqual(d.seen, []);
      assert.equal([...readByABC(), ...d.seen].length, 60, 'a record was read again after a rebalance');

      // The group, emptied, keeps its commits: a new member resumes after them and reads only
      // the record produced now.
      await a.consumer.disconnect();
      await b.consumer.disconnect();
      await producer.send({ topic: TOPIC, acks: -1, messages: [{ key: 'k', value: 'later', partition: 0 }] });
      const e = await member();
      await waitUntil(() => e.seen.length >= 1, WAIT_MS, 'the new record');
      assert.deepEqual(e.seen.map((r) => r.value), ['later']);
      await e.consumer.disconnect();

      // Empty now: the group can be deleted.
      await admin.deleteGroups([GROUP]);
      const afterDelete = await admin.listGroups();
      assert.ok(!afterDelete.groups.some((g) => g.groupId === GROUP), 'deleted group still listed');
    }));
});
