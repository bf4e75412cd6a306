'use strict';

// DEBUG=espial says why for every removal and refusal: a member that left, one that crashed
// (its connection reset and the redial was refused), a node this node's filter refused, and
// on the refused node, who refused it. Nodes in child processes, so that each has its own
// stderr.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { randomPorts, uniqueCluster, manualOptions, withNodes, ids, delay } = require('./support.js');

// Starts a child with DEBUG=espial (fork copies the environment when it starts).
async function debugChild(scope, options, name) {
  const before = process.env.DEBUG;
  process.env.DEBUG = 'espial';
  try {
    return await scope.child(options, name);
  } finally {
    if (before === undefined) delete process.env.DEBUG;
    else process.env.DEBUG = before;
  }
}

const lineAbout = (child, id, pattern) =>
  child
    .output()
    .split('\n')
    .find((line) => line.includes(id) && pattern.test(line));

// The line of `child`'s stderr about `id` that matches `pattern`, once it has come (stderr
// and the events travel apart): polled, for at most 5 s.
async function logged(child, id, pattern) {
  for (let i = 0; i < 100; i++) {
    const line = lineAbout(child, id, pattern);
    if (line) return line;
    await delay(50);
  }
  assert.fail(`${child.name}: no line about ${id} matching ${pattern}; stderr: ${child.output()}`);
}

test('DEBUG=espial gives the reason of every removal (left, reset) and refusal (filter, refused by)', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portB, portC, portR, portN] = randomPorts(5);
    const seed = [`127.0.0.1:${portA}`];
    const a = await debugChild(scope, manualOptions({ port: portA, cluster }), 'a');
    const b = await debugChild(scope, manualOptions({ port: portB, cluster, peers: seed }), 'b');
    const c = await debugChild(scope, manualOptions({ port: portC, cluster, peers: seed }), 'c');
    await a.events.until('a sees b and c', () => a.events.seen('added_node').length === 2);
    await b.request('exit');
    await c.kill();
    await a.events.until('a removed both', () => a.events.seen('removed_node').length === 2);
    await logged(a, b.node.id, /removed .*: left/);
    await logged(a, c.node.id, /removed .*: reset/);

    const other = uniqueCluster();
    const r = await debugChild(scope, manualOptions({ port: portR, cluster: other }), 'r');
    await r.request('filter', { accept: false });
    const n = await debugChild(scope, manualOptions({ port: portN, cluster: other, peers: [`127.0.0.1:${portR}`] }), 'n');
    await n.events.next('node_rejected', 'n: node_rejected');
    await logged(r, n.node.id, /refused .*: refused by the connection filter; .*doubling/);
    await logged(n, r.node.id, /refused by .*: its connection filter said no/);
    assert.deepEqual(ids(r.events.seen('node_accepted')), []);
  });
});
