'use strict';

// Formation (issue 19): nodes started at the same instant, each on its own loopback address
// (127.0.0.K, all on one port), finding each other through one seed only: exactly one node
// emits `promotion`, and every node sees every other, under one master, within 1 s of the
// last `listening`. Ten rounds of 10 nodes (in every other one the seed comes up 50 ms
// after the others), and one of 30. Every wait is bounded.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { performance } = require('node:perf_hooks');
const { randomPorts, uniqueCluster, manualOptions, withNodes, delay, within } = require('./support.js');

// One formation of `n` nodes by seeds only; resolves with what happened. With `seedLateMs`
// the seed (127.0.0.1) is started that long after the others, which dial it in vain first.
async function form(scope, n, { limitMs, seedLateMs = 0 }) {
  const cluster = uniqueCluster();
  const [port] = randomPorts(1);
  const seed = `127.0.0.1:${port}`;
  const listened = [];
  let promotions = 0;
  const nodes = [];
  const start = (k) => {
    const address = `127.0.0.${k + 1}`;
    const node = scope.node(manualOptions({ port, cluster, address, peers: [seed] }), `f${k}`);
    node.once('listening', () => listened.push(performance.now()));
    node.on('promotion', () => promotions++);
    nodes[k] = node;
  };
  // All constructed in one tick: they start together on the next.
  for (let k = seedLateMs ? 1 : 0; k < n; k++) start(k);
  if (seedLateMs) {
    await delay(seedLateMs);
    start(0);
  }
  const formed = () => {
    if (listened.length < n) return false;
    const master = nodes[0].get_master();
    return (
      master !== undefined &&
      nodes.every((node) => node.get_nodes().length === n - 1 && node.get_master()?.id === master.id)
    );
  };
  const deadline = performance.now() + limitMs + 10_000;
  while (!formed()) {
    if (performance.now() > deadline) {
      const seen = nodes.map((node) => node.get_nodes().length);
      throw new Error(`not formed: ${listened.length} listening, members seen ${seen}`);
    }
    for (const node of nodes) node.events.assertNoErrors();
    await delay(5);
  }
  const after = performance.now() - Math.max(...listened);
  // A late promotion would come within an election timeout of the start: wait some.
  await delay(300);
  return { after, promotions };
}

test('10 nodes by seeds only, started at the same instant, 10 times: one promotion, all see all within 1 s', async () => {
  const rounds = [];
  for (let round = 0; round < 10; round++) {
    await withNodes(async (scope) => {
      // Every other round, the seed comes up 50 ms after the others.
      const seedLateMs = round % 2 ? 50 : 0;
      rounds.push(await within(20_000, form(scope, 10, { limitMs: 1000, seedLateMs }), () => `round ${round} hung`));
    });
  }
  const summary = rounds.map((r) => `${r.after.toFixed(0)} ms/${r.promotions}`).join(', ');
  for (const [i, r] of rounds.entries()) {
    assert.equal(r.promotions, 1, `round ${i}: ${r.promotions} promotions (all rounds: ${summary})`);
    assert.ok(r.after < 1000, `round ${i}: formed ${r.after.toFixed(0)} ms after the last listening (${summary})`);
  }
});

test('30 nodes on loopback by seeds only: one promotion, all see all', async () => {
  await withNodes(async (scope) => {
    const r = await within(30_000, form(scope, 30, { limitMs: 5000 }), () => '30 nodes hung');
    assert.equal(r.promotions, 1, `${r.promotions} promotions`);
  });
});
