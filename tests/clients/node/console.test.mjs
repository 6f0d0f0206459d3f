// The web console in a real browser (node:test): headless Chromium (Debian's `chromium`) driven
// by Playwright (`playwright-core`, which downloads no browser of its own) against a live broker
// that kafkajs gave two topics, records with keys, headers and binary values, and a consumer
// group with a member and commits. It loads every view and checks what each shows against
// what was produced and against the JSON API behind it: topic names and counts, a record's key,
// value and headers (binary and markup shown escaped, no script run), the group's members and
// per-partition lag, the broker and its configs, and a 404 (creating nothing) for an unknown
// topic.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { freePort, startBroker, waitUntil, withBrokerLog } from './broker.mjs';

const require = createRequire(import.meta.url);
const { Kafka, logLevel } = require('kafkajs');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 60_000;
const TEST_TIMEOUT_MS = 180_000;
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const BINARY = Buffer.from([0x00, 0x01, 0x02, 0xff]);
const MARKUP = '<script>window.pwned = true; alert(1)</script>';

describe('the console in headless Chromium', { timeout: TEST_TIMEOUT_MS }, () => {
  let broker;
  let base;
  let kafka;
  let consumer;
  let context;
  let userDataDir;
  const dialogs = [];

  before(async () => {
    const httpPort = await freePort();
    broker = await startBroker({
      overrides: {
        'http.listen': `127.0.0.1:${httpPort}`,
        'group.initial.rebalance.delay.ms': '0',
        'offsets.topic.num.partitions': '2',
      },
    });
    base = `http://127.0.0.1:${httpPort}`;
    kafka = new Kafka({ clientId: 'console-test', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING });
    await withBrokerLog(broker, seed);
    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'runnel-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
  });

  after(async () => {
    if (context) await context.close();
    if (consumer) await consumer.disconnect();
    if (broker) await broker.kill();
    if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  });

  /** Two topics, six records, a group member that read them and committed two partitions. */
  async function seed() {
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic: 'orders', numPartitions: 3 },
        { topic: 'audit', numPartitions: 1, configEntries: [{ name: 'retention.ms', value: '86400000' }] },
      ],
    });
    await admin.disconnect();
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic: 'orders',
      messages: [
        { partition: 0, key: 'a', value: 'first' },
        { partition: 0, key: 'b', value: 'second' },
        { partition: 1, key: 'order-7', value: '{"total":42}', headers: { source: 'web' }, timestamp: '1700000000123' },
        { partition: 1, key: 'bin', value: BINARY },
        { partition: 1, key: 'markup', value: MARKUP },
        { partition: 1, key: null, value: 'last' },
      ],
    });
    await producer.send({ topic: 'audit', messages: [{ value: 'audited' }] });
    await producer.disconnect();

    consumer = kafka.consumer({ groupId: 'billing', maxWaitTimeInMs: 500, heartbeatInterval: 500 });
    await consumer.connect();
    await consumer.subscribe({ topics: ['orders'], fromBeginning: true });
    let seen = 0;
    await consumer.run({ autoCommit: false, eachMessage: async () => { seen += 1; } });
    await waitUntil(() => seen === 6, WAIT_MS, 'the member to read the six records');
    await consumer.commitOffsets([
      { topic: 'orders', partition: 0, offset: '2' },
      { topic: 'orders', partition: 1, offset: '1' },
    ]);
    await waitUntil(async () => {
      const group = await getJson('/api/groups/billing');
      return group.members.length === 1 && group.partitions.filter((p) => p.committed_offset !== null).length === 2;
    }, WAIT_MS, 'the commits and the member in /api/groups/billing');
  }

  async function getJson(route) {
    const response = await fetch(base + route);
    assert.equal(response.status, 200, `${route}: ${response.status}`);
    assert.match(response.headers.get('content-type'), /application\/json/);
    return response.json();
  }

  async function open(route) {
    const page = await context.newPage();
    page.on('dialog', (dialog) => { dialogs.push(dialog.message()); dialog.dismiss(); });
    const response = await page.goto(base + route);
    return { page, response };
  }

  const cells = (page, selector) => page.locator(selector).locator('td').allTextContents();

  it('lists the topics with partition and record counts', async () => {
    const { page, response } = await open('/');
    assert.equal(response.status(), 200);
    assert.equal(await page.title(), 'Topics · Runnel');
    const api = await getJson('/api/topics');
    assert.deepEqual(api.topics.map((t) => t.name), ['audit', 'orders']);
    const orders = await cells(page, 'tr[data-topic="orders"]');
    assert.equal(orders[0], 'orders');
    assert.equal(orders[1], '3', 'partitions');
    assert.equal(orders[2], '6', 'records');
    assert.equal(api.topics.find((t) => t.name === 'orders').records, 6);
    const audit = await cells(page, 'tr[data-topic="audit"]');
    assert.deepEqual(audit.slice(0, 3), ['audit', '1', '1']);
    await page.close();
  });

  it('shows a topic\'s partitions, configs and records, escaped', async () => {
    const { page } = await open('/');
    await page.click('tr[data-topic="orders"] a');
    await page.waitForURL(`${base}/topics/orders`);
    assert.equal(await page.locator('#title').textContent(), 'orders');
    const api = await getJson('/api/topics/orders');
    assert.equal(await page.locator('#partitions tr[data-partition]').count(), 3);
    for (const partition of api.partitions) {
      const row = await cells(page, `#partitions tr[data-partition="${partition.partition}"]`);
      assert.equal(row[4], String(partition.high_watermark), `partition ${partition.partition}'s high watermark`);
      assert.equal(row[6], String(partition.log_end_offset));
    }
    assert.deepEqual(api.partitions.map((p) => p.high_watermark), [2, 4, 0]);

    // The browser: partition 1 from offset 0, chosen in the form.
    await page.selectOption('#browse select[name="partition"]', '1');
    await page.fill('#browse input[name="offset"]', '0');
    await page.click('#browse button[type="submit"]');
    await page.waitForURL(/partition=1/);
    const rows = page.locator('#records tr[data-offset]');
    assert.equal(await rows.count(), 4);
    const first = await cells(page, '#records tr[data-offset="0"]');
    assert.equal(first[0], '0');
    assert.match(first[1], /^2023-11-14 22:13:20\.123 UTC/);
    assert.equal(first[2], 'order-7');
    assert.equal(first[3], '{"total":42}');
    assert.equal(first[4], 'source: web');
    const binary = await cells(page, '#records tr[data-offset="1"]');
    assert.equal(binary[3], '\\x00\\x01\\x02\\xff', 'binary shown as \\xNN');
    const markup = await cells(page, '#records tr[data-offset="2"]');
    assert.equal(markup[3], MARKUP, 'markup shown as text');
    assert.equal(await page.evaluate(() => window.pwned), undefined, 'no script from a record ran');
    const keyless = await cells(page, '#records tr[data-offset="3"]');
    assert.equal(keyless[2], 'null');

    const records = await getJson('/api/topics/orders/records?partition=1&offset=0&limit=10');
    assert.deepEqual(records.records.map((r) => r.key && r.key.text), ['order-7', 'bin', 'markup', null]);
    assert.equal(records.records[0].value.text, first[3]);
    assert.deepEqual(records.records[0].headers, [['source', { text: 'web', bytes: 3, truncated: false }]]);
    const latest = await getJson('/api/topics/orders/records?partition=1&limit=2');
    assert.deepEqual(latest.records.map((r) => r.offset), [2, 3], 'the latest two by default');
    await page.close();

    const audit = await open('/topics/audit');
    const configs = await audit.page.locator('#configs tr').allTextContents();
    assert.ok(configs.some((row) => row === 'retention.ms86400000DYNAMIC_TOPIC_CONFIG'), configs.join('\n'));
    await audit.page.close();
  });

  it('shows the group, its member and the lag the JSON API reports', async () => {
    const api = await getJson('/api/groups/billing');
    assert.equal(api.state, 'Stable');
    assert.equal(api.total_lag, 3, 'orders-0 at 2 of 2, orders-1 at 1 of 4, orders-2 without a commit');
    const { page } = await open('/groups');
    const row = await cells(page, 'tr[data-group="billing"]');
    assert.equal(row[0], 'billing');
    assert.equal(row[1], 'Stable');
    assert.equal(row[4], '1', 'members');
    assert.equal(row[6], String(api.total_lag));
    await page.click('tr[data-group="billing"] a');
    await page.waitForURL(`${base}/groups/billing`);
    assert.equal(await page.locator('#total-lag').textContent(), String(api.total_lag));
    assert.equal(await page.locator('#members tr').count(), 2, 'a header and the member');
    const member = await cells(page, '#members tr:nth-child(2)');
    assert.equal(member[0], api.members[0].member_id);
    assert.equal(member[2], 'console-test');
    assert.equal(member[4], 'orders-0, orders-1, orders-2');
    for (const partition of api.partitions) {
      const shown = await cells(page, `#lag tr[data-topic="${partition.topic}"][data-partition="${partition.partition}"]`);
      const dash = (value) => (value === null ? '-' : String(value));
      assert.deepEqual(shown.slice(0, 5), [
        partition.topic, String(partition.partition), dash(partition.committed_offset),
        dash(partition.end_offset), dash(partition.lag),
      ]);
    }
    assert.deepEqual(api.partitions.map((p) => p.lag), [0, 3, null]);
    await page.close();
  });

  it('shows the broker and its configs', async () => {
    const api = await getJson('/api/brokers');
    assert.equal(api.length, 1);
    const { page } = await open('/brokers');
    const row = await cells(page, '#brokers tr:nth-child(2)');
    assert.equal(row[0], String(api[0].node_id));
    assert.equal(row[2], String(broker.port));
    const configs = await page.locator('#broker-configs tr td:first-child').allTextContents();
    assert.ok(configs.includes('node.id') && configs.includes('log.segment.bytes'), configs.join(', '));
    assert.equal(configs.length, api[0].configs.length);
    await page.close();
  });

  it('answers 404 for an unknown topic or group and creates nothing', async () => {
    const { page, response } = await open('/topics/nosuch');
    assert.equal(response.status(), 404);
    assert.match(await page.locator('body').textContent(), /Topic 'nosuch' does not exist/);
    await page.close();
    assert.equal((await fetch(`${base}/api/topics/nosuch`)).status, 404);
    assert.equal((await fetch(`${base}/api/topics/nosuch/records`)).status, 404);
    assert.equal((await fetch(`${base}/api/groups/nosuch`)).status, 404);
    const topics = await getJson('/api/topics');
    assert.deepEqual(topics.topics.map((t) => t.name), ['audit', 'orders']);
    assert.deepEqual(dialogs, [], 'no page opened a dialog');
  });
});
