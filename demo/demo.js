'use strict';

// Starts a four-node espial cluster on this machine and shows it forming, electing a master,
// passing custom events, failing over when the master is killed, and leaving.
// Each node is a child process (demo/node.js) on 127.0.0.1 with ports of its own, in a demo
// cluster of its own: nothing here touches a real network interface or another cluster.
// The demo is a list of steps run in order; later features add their own steps to `STEPS`.

const { fork } = require('node:child_process');
const crypto = require('node:crypto');
const path = require('node:path');

const NAMES = ['A', 'B', 'C', 'D'];
const FAILOVER_BOUND_MS = 1_500; // after kill -9 of the master, the others must agree by then (under silence's 1.6 s)
const DEADLINE_MS = 20_000;
const START_GAP_MS = 300; // the joiners start one after another
// A node receives an event once its join() has reached the sender; on loopback that takes
// milliseconds, so this pause is ample.
const JOIN_SETTLE_MS = 250;

const startedAt = Date.now();
const cluster = `espial-demo-${crypto.randomBytes(3).toString('hex')}`;
const basePort = 20000 + crypto.randomInt(12000);
const multicastPort = basePort + NAMES.length;

// name -> { child, info, peers: Set of names, master: name or null, replies, exited, leaving }
const nodes = new Map();
const waiters = [];
let nextRequest = 0;

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

// Like until(), but the demo fails if it takes longer than `ms`.
async function within(ms, what, predicate) {
  const bound = setTimeout(() => fail(`${what} did not happen within ${ms} ms`), ms);
  await until(predicate);
  clearTimeout(bound);
}

function settleWaiters() {
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (waiters[i].predicate()) waiters.splice(i, 1)[0].resolve();
  }
}

const results = []; // { id, by, sum } of every result the masters heard

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
      // A departed master is no master, until the next new_master.
      if (state.master === data.metadata.name) state.master = null;
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
    case 'new_master':
      state.master = data.metadata.name;
      log(name, `new_master     ${describe(data)}${data.metadata.name === name ? ' (this node)' : ''}`);
      break;
    case 'promotion':
      state.promoted = true;
      log(name, `promotion      previous master: ${data.previous_master ? data.previous_master.metadata.name : 'none'}`);
      break;
    case 'demotion':
      state.promoted = false;
      log(name, `demotion       new master: ${data.new_master ? data.new_master.metadata.name : 'none'}`);
      break;
    case 'job':
      log(name, `job #${data.job.id} from ${data.from.metadata.name}: sum of [${data.job.numbers}]; replying`);
      break;
    case 'result':
      results.push(data.result);
      log(name, `result of job #${data.result.id} from ${data.from.metadata.name}: ${data.result.sum}`);
      break;
    case 'error':
      fail(`node ${name} reported an error: ${data.message} (${data.code})`);
      break;
  }
  settleWaiters();
}

function startNode(name, port) {
  const child = fork(path.join(__dirname, 'node.js'), [name, String(port), String(multicastPort), cluster]);
  const state = { child, info: null, peers: new Set(), master: null, replies: new Map(), exited: null };
  state.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.on('message', (msg) => {
    if (msg.type === 'event') onEvent(name, msg.event, msg.data);
    else if (msg.type === 'reply') {
      state.replies.get(msg.id)?.(msg.data);
      state.replies.delete(msg.id);
    }
  });
  child.once('exit', (code, signal) => {
    if (!state.leaving) fail(`node ${name} ended unexpectedly (code ${code}, signal ${signal})`);
  });
  nodes.set(name, state);
}

// Sends a request to one node and resolves with its reply.
function ask(name, type, args = {}) {
  const state = nodes.get(name);
  const id = nextRequest++;
  return new Promise((resolve) => {
    state.replies.set(id, resolve);
    state.child.send({ type, id, ...args });
  });
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const alive = () => [...nodes.values()];
const everyoneSeesEveryone = () =>
  alive().every((state) => state.info && state.peers.size === nodes.size - 1);
// Every node follows the same master, and that master is one of them.
const agreedMaster = () => {
  const masters = new Set(alive().map((state) => state.master));
  const [master] = masters;
  return masters.size === 1 && nodes.has(master) ? master : null;
};

// The master sends a job to every node that joined 'job', or to `targets`; resolves once
// `expected` results of it have come back.
async function sendJob(master, id, numbers, expected, targets) {
  const to = targets ? targets.map((t) => `${t} (id ${nodes.get(t).info.id.slice(0, 8)})`).join(', ') : 'every worker';
  log(master, `send('job', #${id}) to ${to}`);
  await ask(master, 'send', { event: 'job', data: { id, numbers }, targets: targets?.map((t) => nodes.get(t).info.id) });
  await until(() => results.filter((r) => r.id === id).length === expected);
}

async function setUpJobs(master) {
  const workers = [...nodes.keys()].filter((name) => name !== master);
  for (const worker of workers) {
    await ask(worker, 'join', { event: 'job' });
    log(worker, "join('job')");
  }
  await ask(master, 'join', { event: 'result' });
  log(master, "join('result')");
  await delay(JOIN_SETTLE_MS);
  return workers;
}

let firstMaster;

const STEPS = [
  {
    title: `Starting node ${NAMES[0]} alone in cluster "${cluster}" on 127.0.0.1: it becomes master after master_election_timeout (1 s)`,
    async run() {
      startNode(NAMES[0], basePort);
      await until(() => nodes.get(NAMES[0]).master === NAMES[0] && nodes.get(NAMES[0]).promoted);
    },
  },
  {
    title: `${NAMES.slice(1).join(', ')} join: each adopts the cluster's master, nobody else is elected`,
    async run() {
      for (const [i, name] of NAMES.entries()) {
        if (i === 0) continue;
        if (i > 1) await delay(START_GAP_MS);
        startNode(name, basePort + i);
      }
      await until(() => everyoneSeesEveryone() && agreedMaster());
      firstMaster = agreedMaster();
    },
  },
  {
    title: 'Everyone agrees: get_master() and is_master() on each node',
    async run() {
      for (const name of nodes.keys()) {
        const { master, is_master: isMaster } = await ask(name, 'master');
        log(name, `get_master() -> ${master ? describe(master) : 'none'}, is_master() -> ${isMaster}`);
        if (!master || master.metadata.name !== firstMaster) fail(`${name} does not agree on master ${firstMaster}`);
      }
    },
  },
  {
    title: "Custom events: the workers join 'job', the master joins 'result', sends jobs, and the workers reply",
    async run() {
      const workers = await setUpJobs(firstMaster);
      await sendJob(firstMaster, 1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], workers.length);
      await sendJob(firstMaster, 2, [40, 2], 1, [workers[1]]);
    },
  },
  {
    // A function: the master is known only once the steps before have run.
    title: () => `Failover: kill -9 the master (${firstMaster}); the others remove it and the smallest eligible id takes over at once`,
    async run() {
      const master = firstMaster;
      const state = nodes.get(master);
      state.leaving = true;
      const killedAt = Date.now();
      state.child.kill('SIGKILL');
      log(master, 'killed with SIGKILL');
      await state.exited;
      nodes.delete(master);
      // Silence would take 1.9 s (the default send_presence_frequency, 300 ms; at least
      // 1.6 s after the kill), so this quick failover comes from the crash itself: the
      // connection resets and a redial is refused.
      await within(FAILOVER_BOUND_MS, 'a new master after kill -9', () =>
        alive().every((other) => !other.peers.has(master)) && agreedMaster(),
      );
      const next = agreedMaster();
      const smallest = alive()
        .map((s) => s.info)
        .sort((a, b) => (a.id < b.id ? -1 : 1))[0];
      log('', `every node agreed on ${next} within ${Date.now() - killedAt} ms of the kill`);
      if (next !== smallest.metadata.name) fail(`expected ${smallest.metadata.name}, the smallest id, to take over`);
    },
  },
  {
    title: 'The new master hands out work too',
    async run() {
      const master = agreedMaster();
      // The new master had joined 'job' as a worker; the others still have.
      const workers = [...nodes.keys()].filter((name) => name !== master);
      await ask(master, 'join', { event: 'result' });
      log(master, "join('result')");
      await delay(JOIN_SETTLE_MS);
      await sendJob(master, 3, [100, 200, 300], workers.length);
    },
  },
  {
    title: 'Leaving one by one, the master first: exit() ends each process by itself, and the next master takes over at once',
    async run() {
      const master = agreedMaster();
      for (const name of [master, ...[...nodes.keys()].filter((n) => n !== master)]) {
        const state = nodes.get(name);
        state.leaving = true;
        await ask(name, 'exit');
        const { code, signal } = await state.exited;
        if (code !== 0) fail(`node ${name} ended with code ${code}, signal ${signal}`);
        log(name, 'process ended');
        nodes.delete(name);
        await until(() => alive().every((other) => !other.peers.has(name)) && (nodes.size === 0 || agreedMaster()));
      }
    },
  },
];

async function main() {
  const deadline = setTimeout(() => fail(`not finished after ${DEADLINE_MS / 1000} s`), DEADLINE_MS);
  for (const [i, step] of STEPS.entries()) {
    const title = typeof step.title === 'function' ? step.title() : step.title;
    console.log(`\n== ${i + 1}. ${title}`);
    await step.run();
  }
  clearTimeout(deadline);
  console.log('\ndone');
}

main().catch((err) => fail(err.stack));
