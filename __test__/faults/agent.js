'use strict';

// One espial node on one namespace host of the fault test, with its traffic (run.js starts it
// as `ip netns exec <ns> node agent.js <options JSON> <sendEveryMs>`). JSON lines:
//   stdout: { t: 'info', id } once; { t: 'ev', ev, id?, at, ... } for every membership and
//           election event (streamed, so that a process killed with -9 still leaves its
//           events behind); { t: 'reply', rid, data } per request.
//   stdin:  { rid, type } requests: view, promote, stop (traffic), report, exit.
// Traffic: to every other member, one numbered message ({ n }, numbers per target id from 0)
// every sendEveryMs, awaiting each send(); what resolved, what was refused and what is still
// pending are kept per target, what arrived per sender, and `undelivered` per target.
// stdin closing (the runner went away) ends the process.

const readline = require('node:readline');
const espial = require('../..');

const options = JSON.parse(process.argv[2]);
const sendEveryMs = Number(process.argv[3] || 20);
const EVENT = 'seq';

const node = espial(options);
node.join(EVENT); // before any member exists: the join travels with this node's profile
const self = node.get_node_info().id;

const out = (msg) => process.stdout.write(`${JSON.stringify(msg)}\n`);
const now = () => Date.now(); // one clock for every namespace of the machine

const received = new Map(); // sender id -> [n, …] in arrival order
const targets = new Map(); // target id -> { next, resolved: [], refused: [], pending, loop }
const undelivered = new Map(); // target id -> [n, …] in report order
const oddities = []; // anything the traffic did not expect (a bad payload)

node.on(EVENT, (data, from) => {
  if (!data || typeof data.n !== 'number') {
    oddities.push({ from: from?.id, data });
    return;
  }
  let list = received.get(from.id);
  if (!list) received.set(from.id, (list = []));
  list.push(data.n);
});

for (const ev of ['added_node', 'removed_node', 'updated_node', 'node_accepted', 'node_rejected']) {
  node.on(ev, (n) => out({ t: 'ev', ev, id: n.id, at: now() }));
}
node.on('new_master', (n) => out({ t: 'ev', ev: 'new_master', id: n?.id, at: now() }));
node.on('promotion', (p) => out({ t: 'ev', ev: 'promotion', id: p?.previous_master?.id, at: now() }));
node.on('demotion', (n) => out({ t: 'ev', ev: 'demotion', id: n?.id, at: now() }));
node.on('error', (err) => out({ t: 'ev', ev: 'error', message: err.message, code: err.code, at: now() }));
node.on('undelivered', (n, events) => {
  const ns = events.filter((e) => e.event === EVENT).map((e) => e.data?.n);
  let list = undelivered.get(n.id);
  if (!list) undelivered.set(n.id, (list = []));
  list.push(...ns);
  out({ t: 'ev', ev: 'undelivered', id: n.id, count: ns.length, at: now() });
});

let sending = true;
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const isMember = (id) => node.get_nodes().some((n) => n.id === id);

async function sendLoop(id, state) {
  while (sending && isMember(id)) {
    const started = now();
    const n = state.next++;
    state.pending = n;
    try {
      await node.send(EVENT, { n }, id);
      state.resolved.push(n);
    } catch (err) {
      state.refused.push([n, err.code]);
    }
    state.pending = undefined;
    const rest = sendEveryMs - (now() - started);
    if (rest > 0) await delay(rest);
  }
  state.loop = undefined;
}

function ensureLoop(id) {
  let state = targets.get(id);
  if (!state) targets.set(id, (state = { next: 0, resolved: [], refused: [], pending: undefined, loop: undefined }));
  if (sending && !state.loop) state.loop = sendLoop(id, state);
}

node.on('added_node', (n) => ensureLoop(n.id));
// Every tick, a loop for every member that has none (a member may come back without a new
// added_node: a suspect that returned).
const ticker = setInterval(() => {
  for (const n of node.get_nodes()) ensureLoop(n.id);
}, 250);

async function stopTraffic(ms) {
  sending = false;
  clearInterval(ticker);
  const loops = [...targets.values()].map((s) => s.loop).filter(Boolean);
  await Promise.race([Promise.all(loops), delay(ms)]);
}

function report() {
  const obj = (map) => Object.fromEntries(map);
  return {
    id: self,
    received: obj(received),
    sent: obj(
      [...targets].map(([id, s]) => [id, { next: s.next, resolved: s.resolved, refused: s.refused, pending: s.pending }]),
    ),
    undelivered: obj(undelivered),
    oddities,
  };
}

const requests = {
  view: () => ({ nodes: node.get_nodes().map((n) => n.id), master: node.get_master()?.id, isMaster: node.is_master() }),
  promote: () => {
    try {
      node.promote();
      return { ok: true };
    } catch (err) {
      return { error: err.code || err.message };
    }
  },
  stop: async ({ ms }) => {
    await stopTraffic(ms);
    return { pending: [...targets].filter(([, s]) => s.pending !== undefined).length };
  },
  report,
  exit: async ({ ms }) => {
    await stopTraffic(ms);
    await node.exit();
    return report();
  },
};

let ending = false;
function end() {
  if (ending) return;
  ending = true;
  setTimeout(() => process.exit(0), 3000).unref();
  node.exit().finally(() => process.exit(0));
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  const handler = requests[msg.type];
  let data;
  try {
    data = handler ? await handler(msg) : { error: `unknown request ${msg.type}` };
  } catch (err) {
    data = { error: err.message };
  }
  out({ t: 'reply', rid: msg.rid, data });
  if (msg.type === 'exit') end();
});
lines.on('close', end);

out({ t: 'info', id: self });
