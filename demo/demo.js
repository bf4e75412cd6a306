'use strict';

// Starts a three-node espial cluster on this machine and shows it forming.
// Each node is a child process (demo/node.js) on 127.0.0.1 with ports of its own, in a demo
// cluster of its own: nothing here touches a real network interface or another cluster.
// The demo is a list of steps run in order; later features add their own steps to `STEPS`.

const { fork } = require('node:child_process');
const crypto = require('node:crypto');
const path = require('node:path');

const NAMES = ['A', 'B', 'C'];
const CRASHED = 'C'; // killed with SIGKILL once the cluster has formed
const CRASH_BOUND_MS = 2_000; // the others must have removed it by then
const DEADLINE_MS = 15_000;
const START_GAP_MS = 500; // nodes start one after another, so joining an existing cluster shows

const startedAt = Date.now();
const cluster = `espial-demo-${crypto.randomBytes(3).toString('hex')}`;
const basePort = 20000 + crypto.randomInt(30000);
const multicastPort = basePort + NAMES.length;

// name -> { child, info, peers: Set of names, reply: pending IPC reply resolver }
const nodes = new Map();
const waiters = [];

function log(name, text) {
  const seconds = ((Date.now() - startedAt) / 1000).toFixed(2).padStart(6);
  console.log(`${seconds}s  ${name.padEnd(2)} ${text}`);
}

// How a node object reads in the log: its name from its metadata, and a short id.
function describe(node) {
  return `${node.metadata.name} (id ${node.id.slice(0, 8)}, ${node.ip}:${node.port})`;
}

function fail(message) {
  console.error(`\ndemo failed: ${message}`);
  for (const { child } of nodes.values()) child.kill('SIGKILL');
  process.exit(1);
}

// Resolves once `predicate()` holds; checked again after every event from any node.
function until(predicate) {
  return new Promise((resolve) => {
    waiters.push({ predicate, resolve });
    settleWaiters();
  });
}

function settleWaiters() {
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (waiters[i].predicate()) waiters.splice(i, 1)[0].resolve();
  }
}

function onEvent(name, event, data) {
  const state = nodes.get(name);
  switch (event) {
    case 'listening':
      state.info = data;
      log(name, `listening as ${describe(data)}`);
      break;
    case 'added_node':
      state.peers.add(data.metadata.name);
      log(name, `added_node     ${describe(data)}`);
      break;
    case 'removed_node':
      state.peers.delete(data.metadata.name);
      log(name, `removed_node   ${describe(data)}`);
      break;
    case 'updated_node':
      log(name, `updated_node   ${describe(data)}`);
      break;
    case 'node_accepted':
      log(name, `node_accepted  by ${describe(data)}`);
      break;
    case 'node_rejected':
      log(name, `node_rejected  by ${describe(data)}`);
      break;
    case 'error':
      fail(`node ${name} reported an error: ${data.message} (${data.code})`);
      break;
  }
  settleWaiters();
}

function startNode(name, port) {
  const child = fork(path.join(__dirname, 'node.js'), [name, String(port), String(multicastPort), cluster]);
  const state = { child, info: null, peers: new Set(), reply: null, exited: null };
  state.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.on('message', (msg) => {
    if (msg.type === 'event') onEvent(name, msg.event, msg.data);
    else if (msg.type === 'reply' && state.reply) state.reply(msg.data);
  });
  child.once('exit', (code, signal) => {
    if (!state.leaving) fail(`node ${name} ended unexpectedly (code ${code}, signal ${signal})`);
  });
  nodes.set(name, state);
}

// Sends a request to one node and resolves with its reply.
function ask(name, type) {
  const state = nodes.get(name);
  return new Promise((resolve) => {
    state.reply = resolve;
    state.child.send({ type });
  });
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const everyoneSeesEveryone = () =>
  [...nodes.values()].every((state) => state.info && state.peers.size === NAMES.length - 1);

const STEPS = [
  {
    title: `Starting ${NAMES.length} nodes on 127.0.0.1 in cluster "${cluster}"`,
    async run() {
      for (const [i, name] of NAMES.entries()) {
        if (i > 0) await delay(START_GAP_MS);
        startNode(name, basePort + i);
      }
      await until(everyoneSeesEveryone);
    },
  },
  {
    title: 'Every node sees the other two: get_nodes() on each',
    async run() {
      for (const name of NAMES) {
        const others = await ask(name, 'get_nodes');
        log(name, `get_nodes() -> ${others.map(describe).join(', ')}`);
      }
    },
  },
  {
    title: `Crash: kill -9 node ${CRASHED}; with no goodbye, the others still see it go at once`,
    async run() {
      const state = nodes.get(CRASHED);
      state.leaving = true;
      const killedAt = Date.now();
      state.child.kill('SIGKILL');
      log(CRASHED, 'killed with SIGKILL');
      await state.exited;
      nodes.delete(CRASHED);
      // Heartbeats are every 5 s (the default send_presence_frequency), so this quick removal
      // comes from the crash itself: the connection resets and a redial is refused.
      const bound = setTimeout(
        () => fail(`the others had not removed ${CRASHED} ${CRASH_BOUND_MS} ms after kill -9`),
        CRASH_BOUND_MS,
      );
      await until(() => [...nodes.values()].every((other) => !other.peers.has(CRASHED)));
      clearTimeout(bound);
      log('', `every other node removed ${CRASHED} within ${Date.now() - killedAt} ms of the kill`);
    },
  },
  {
    title: 'Leaving one by one: exit() ends each process by itself, and the others see it go',
    async run() {
      for (const name of [...nodes.keys()].reverse()) {
        const state = nodes.get(name);
        state.leaving = true;
        await ask(name, 'exit');
        const { code, signal } = await state.exited;
        if (code !== 0) fail(`node ${name} ended with code ${code}, signal ${signal}`);
        log(name, 'process ended');
        nodes.delete(name);
        await until(() => [...nodes.values()].every((other) => !other.peers.has(name)));
      }
    },
  },
];

async function main() {
  const deadline = setTimeout(() => fail(`not finished after ${DEADLINE_MS / 1000} s`), DEADLINE_MS);
  for (const [i, step] of STEPS.entries()) {
    console.log(`\n== ${i + 1}. ${step.title}`);
    await step.run();
  }
  clearTimeout(deadline);
  console.log('\ndone');
}

main().catch((err) => fail(err.stack));
