// Test harness for the Node suite: a real `runnel server` process, waiting on conditions with
// deadlines (no sleeps as synchronisation), and kcat as a read-back tool.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const RUNNEL_BIN = process.env.RUNNEL_BIN || path.join(REPO_ROOT, 'target/debug/runnel');
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 30_000;
const POLL_MS = 50;

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `predicate` (sync or async) until truthy; return its value, or throw naming `what`. */
export async function waitUntil(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await predicate();
    if (result) return result;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await pause(POLL_MS); // poll interval of a condition wait, not a synchronisation sleep
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Linux hands out ephemeral ports (for `listen(0)` and for every client's outgoing
// connection) from 32768-60999. Node's test runner runs files concurrently, so a base port
// taken from that range can be handed to another file's client socket before dev-cluster binds
// it (CI saw a node exit on exactly that). Ports below the range are never handed out.
const FIXED_PORTS_LOW = 20000;
const FIXED_PORTS_HIGH = 32000;

function canBind(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** `count` consecutive ports, all bindable now, below the kernel's ephemeral range. */
export async function freePortRange(count) {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const base = FIXED_PORTS_LOW + Math.floor(Math.random() * (FIXED_PORTS_HIGH - FIXED_PORTS_LOW - count));
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if ((await Promise.all(ports.map(canBind))).every(Boolean)) return base;
  }
  throw new Error(`no ${count} consecutive free ports in ${FIXED_PORTS_LOW}-${FIXED_PORTS_HIGH}`);
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(500);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => { socket.destroy(); resolve(false); });
  });
}

/** Start `runnel server` on a free port with a fresh data dir; resolves once it accepts TCP. */
export async function startBroker({ overrides = {} } = {}) {
  if (!fs.existsSync(RUNNEL_BIN)) {
    throw new Error(`runnel binary not found at ${RUNNEL_BIN} (set RUNNEL_BIN or cargo build)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runnel-node-'));
  const dataDir = path.join(dir, 'data');
  const logPath = path.join(dir, 'broker.log');
  fs.mkdirSync(dataDir);
  const port = await freePort();
  const bootstrap = `127.0.0.1:${port}`;
  const args = ['server', '--listen', bootstrap, '--data-dir', dataDir];
  for (const [key, value] of Object.entries(overrides)) args.push('--override', `${key}=${value}`);

  const log = () => (fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '');
  const logTail = (lines = 80) => log().split('\n').slice(-lines).join('\n');
  const logFd = fs.openSync(logPath, 'a');
  const child = spawn(RUNNEL_BIN, args, {
    stdio: ['ignore', logFd, logFd],
    env: { RUST_LOG: 'info', RUST_BACKTRACE: '1', NO_COLOR: '1', ...process.env },
  });
  fs.closeSync(logFd);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  const broker = {
    bootstrap, port, dataDir, logPath, log, logTail,
    running: () => child.exitCode === null && child.signalCode === null,
    async kill() {
      if (broker.running()) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      const timer = pause(STOP_TIMEOUT_MS).then(() => 'timeout');
      const result = await Promise.race([exited, timer]);
      if (result === 'timeout') {
        await broker.kill();
        throw new Error(`runnel ignored SIGTERM for ${STOP_TIMEOUT_MS} ms; log:\n${logTail()}`);
      }
      if (result.code !== 0) throw new Error(`runnel exited ${JSON.stringify(result)} after SIGTERM; log:\n${logTail()}`);
    },
  };

  try {
    await waitUntil(async () => {
      if (!broker.running()) throw new Error(`runnel exited (${child.exitCode ?? child.signalCode}) before serving`);
      return canConnect(port);
    }, START_TIMEOUT_MS, `runnel to accept connections on ${bootstrap}`);
  } catch (err) {
    await broker.kill();
    throw new Error(`${err.message}; log:\n${logTail()}`);
  }
  return broker;
}

/** Run `fn`; if it throws, add the broker's log tail to the error. */
export async function withBrokerLog(broker, fn) {
  try {
    return await fn();
  } catch (err) {
    err.message += `\n--- runnel log (${broker.logPath}) ---\n${broker.logTail()}`;
    throw err;
  }
}

/**
 * Every record of `topic` read with kcat (`-C -o beginning -e -J`), sorted by partition/offset.
 * Fields: partition, offset, tstype, ts, key, payload, headers (flat [k, v, k, v...] array).
 */
export function kcatConsumeAll(bootstrap, topic) {
  const out = execFileSync('kcat', ['-C', '-b', bootstrap, '-t', topic, '-o', 'beginning', '-e', '-q', '-J'],
    { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  return out.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line))
    .sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

/**
 * `runnel dev-cluster --nodes N`: N combined nodes on loopback as separate processes, started
 * by the dev-cluster command on ports from `basePort` (node i: client port basePort+2(i-1),
 * controller port one above). Resolves once every node accepts TCP; `stop()` ends them all
 * (SIGTERM to dev-cluster, which stops its nodes).
 */
export async function startDevCluster({ nodes = 3 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runnel-node-cluster-'));
  const dataDir = path.join(dir, 'data');
  const logPath = path.join(dir, 'dev-cluster.log');
  const basePort = await freePortRange(2 * nodes);
  const logFd = fs.openSync(logPath, 'a');
  const child = spawn(RUNNEL_BIN, ['dev-cluster', '--nodes', String(nodes), '--base-port', String(basePort),
    '--data-dir', dataDir], {
    stdio: ['ignore', logFd, logFd],
    env: { RUST_LOG: 'info', RUST_BACKTRACE: '1', NO_COLOR: '1', ...process.env },
  });
  fs.closeSync(logFd);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const clientPorts = Array.from({ length: nodes }, (_, i) => basePort + 2 * i);
  const nodeLogs = () => clientPorts.map((_, i) => {
    const file = path.join(dataDir, `node-${i + 1}.log`);
    return fs.existsSync(file) ? `--- node ${i + 1} ---\n${fs.readFileSync(file, 'utf8').split('\n').slice(-40).join('\n')}` : '';
  }).join('\n');
  const cluster = {
    bootstrap: clientPorts.map((port) => `127.0.0.1:${port}`),
    logTail: () => `${fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : ''}\n${nodeLogs()}`,
    running: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      if (cluster.running()) child.kill('SIGTERM');
      const result = await Promise.race([exited, pause(STOP_TIMEOUT_MS).then(() => 'timeout')]);
      if (result === 'timeout') {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`dev-cluster ignored SIGTERM for ${STOP_TIMEOUT_MS} ms`);
      }
    },
  };
  try {
    await waitUntil(async () => {
      if (!cluster.running()) throw new Error('dev-cluster exited before its nodes served');
      return (await Promise.all(clientPorts.map(canConnect))).every(Boolean);
    }, START_TIMEOUT_MS, `${nodes} nodes to accept connections`);
  } catch (err) {
    if (cluster.running()) child.kill('SIGKILL');
    throw new Error(`${err.message}; log:\n${cluster.logTail()}`);
  }
  return cluster;
}
