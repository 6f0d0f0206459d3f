// One kafkajs consumer-group member in its own OS process, so a test can SIGKILL it (no
// LeaveGroup, no clean close): kafkajs_groups.test.mjs starts it with child_process.spawn.
//
//   node group_member.mjs <bootstrap> <group> <topic> <sessionTimeoutMs>
//
// It reports on stdout, one JSON object a line:
//   {"event":"join","memberId":...,"partitions":[...]}   after each join (GROUP_JOIN)
//   {"event":"message","partition":n,"offset":n,"value":"..."}   for each record read
//   {"event":"crash","error":"...","restart":bool}   kafkajs crashed (exits 1 unless it restarts)
// It exits as soon as its stdin ends, so it never outlives the test process that started it.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, groupId, topic, sessionTimeout] = process.argv.slice(2);
const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

// The parent holds our stdin open: end of stdin means it is gone (or done with us).
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.stdout.on('error', () => process.exit(0)); // EPIPE: nobody reads our reports any more

const kafka = new Kafka({ clientId: 'runnel-js-group-member', brokers: [bootstrap], logLevel: logLevel.NOTHING });
// Same settings as the in-process members of kafkajs_groups.test.mjs (see the comments there).
const consumer = kafka.consumer({
  groupId,
  sessionTimeout: Number(sessionTimeout),
  heartbeatInterval: 500,
  maxWaitTimeInMs: 500,
  retry: { retries: 10 },
});
consumer.on(consumer.events.GROUP_JOIN, (event) => {
  report({ event: 'join', memberId: event.payload.memberId, partitions: event.payload.memberAssignment[topic] ?? [] });
});
consumer.on(consumer.events.CRASH, (event) => {
  report({ event: 'crash', error: String(event.payload.error), restart: event.payload.restart });
  if (!event.payload.restart) process.exit(1);
});

await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await consumer.run({
  autoCommit: true,
  autoCommitInterval: 100,
  eachMessage: async ({ partition, message }) => {
    report({ event: 'message', partition, offset: Number(message.offset), value: message.value.toString() });
  },
});
