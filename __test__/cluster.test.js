'use strict';

// Real nodes through index.js and the native addon, on loopback only.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { EventEmitter } = require('node:events');
const espial = require('..');
const pkg = require('../package.json');
const { randomPorts, uniqueCluster, loopbackOptions, waitFor } = require('./support.js');

const { Espial } = espial;

// Starts one node per entry of `metadata`, all in one fresh cluster, and hands each to `body`
// with the options it was given; every node is exited afterwards, whatever happened.
async function withCluster(metadata, body) {
  const cluster = uniqueCluster();
  const [multicastPort, ...ports] = randomPorts(metadata.length + 1);
  const nodes = [];
  try {
    metadata.forEach((meta, i) => {
      const options = loopbackOptions({ port: ports[i], multicastPort, cluster, metadata: meta });
      options.network.host_name = `node-${i}.test`;
      const node = espial(options);
      // Recorded here so that waits started later still see what already happened.
      node.seen = { listening: false, added: [], errors: [] };
      node.on('listening', () => (node.seen.listening = true));
      node.on('added_node', (other) => node.seen.added.push(other));
      node.on('error', (err) => node.seen.errors.push(err));
      nodes.push({ node, options });
    });
    await body(nodes);
    for (const { node } of nodes) assert.deepEqual(node.seen.errors, []);
  } finally {
    await Promise.all(nodes.map(({ node }) => node.exit()));
  }
}

function until(node, event, what, accept) {
  const already = event === 'listening' ? node.seen.listening : node.seen.added.some(accept);
  return already ? Promise.resolve() : waitFor(node, event, what, accept);
}

// The public node object a peer should see for a node started with `options`.
function expectedNode(node, options) {
  return {
    id: node.get_node_info().id,
    host_name: options.network.host_name,
    ip: '127.0.0.1',
    port: options.network.port,
    metadata: options.metadata,
  };
}

test('two nodes on loopback find each other by multicast', async () => {
  await withCluster([{ role: 'a', n: 1 }, { role: 'b', tags: ['x', null] }], async ([a, b]) => {
    for (const { node, options } of [a, b]) {
      const own = node.get_node_info();
      assert.equal(typeof own.id, 'string');
      assert.ok(own.id.length > 0);
      assert.deepEqual(own, expectedNode(node, options));
    }
    assert.notEqual(a.node.get_node_info().id, b.node.get_node_info().id);

    const isB = (n) => n.id === b.node.get_node_info().id;
    const isA = (n) => n.id === a.node.get_node_info().id;
    await Promise.all([
      until(a.node, 'listening', 'a: listening'),
      until(b.node, 'listening', 'b: listening'),
      until(a.node, 'added_node', 'a: added_node for b', isB),
      until(b.node, 'added_node', 'b: added_node for a', isA),
    ]);

    const seenByA = a.node.seen.added.find(isB);
    const seenByB = b.node.seen.added.find(isA);
    assert.deepEqual(seenByA, expectedNode(b.node, b.options));
    assert.deepEqual(seenByB, expectedNode(a.node, a.options));
    // Own beacons are ignored: nobody is told about itself.
    assert.ok(a.node.seen.added.every(isB), 'a was only told about b');
    assert.ok(b.node.seen.added.every(isA), 'b was only told about a');

    assert.deepEqual(a.node.get_nodes(), [expectedNode(b.node, b.options)]);
    assert.deepEqual(b.node.get_nodes(), [expectedNode(a.node, a.options)]);
  });
});

test('a node that exits is removed from the other\'s get_nodes()', async () => {
  await withCluster([{}, {}], async ([a, b]) => {
    const aId = a.node.get_node_info().id;
    const bId = b.node.get_node_info().id;
    await Promise.all([
      until(a.node, 'added_node', 'a: added_node for b', (n) => n.id === bId),
      until(b.node, 'added_node', 'b: added_node for a', (n) => n.id === aId),
    ]);
    const removed = waitFor(b.node, 'removed_node', 'b: removed_node for a', (n) => n.id === aId);
    await a.node.exit();
    const [node] = await removed;
    assert.deepEqual(node, expectedNode(a.node, a.options));
    assert.deepEqual(b.node.get_nodes(), []);
  });
});

test('both construction forms make an Espial and carry the version', async () => {
  const cluster = uniqueCluster();
  const [multicastPort, port1, port2] = randomPorts(3);
  const nodes = [];
  try {
    nodes.push(espial(loopbackOptions({ port: port1, multicastPort, cluster })));
    nodes.push(new Espial(loopbackOptions({ port: port2, multicastPort, cluster })));
    for (const node of nodes) {
      assert.ok(node instanceof Espial);
      assert.ok(node instanceof espial);
      assert.ok(node instanceof EventEmitter);
      assert.equal(node.version, pkg.version);
    }
  } finally {
    await Promise.all(nodes.map((node) => node.exit()));
  }
});

test('bad options throw a TypeError naming the option, in both forms', () => {
  const unknown = { name: 'TypeError', code: 'ERR_ESPIAL_UNKNOWN_OPTION', message: /"network\.prot"/ };
  const badPort = { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /"network\.port"/ };
  assert.throws(() => espial({ network: { prot: 27272 } }), unknown);
  assert.throws(() => new Espial({ network: { prot: 27272 } }), unknown);
  assert.throws(() => espial({ network: { port: 70000 } }), badPort);
  assert.throws(() => new espial({ network: { port: 70000 } }), badPort);
});

test('exit() calls back, and calling it twice returns the same promise', async () => {
  const [multicastPort, port] = randomPorts(2);
  const node = espial(loopbackOptions({ port, multicastPort, cluster: uniqueCluster() }));
  const first = node.exit();
  assert.equal(node.exit(), first);
  const err = await new Promise((resolve) => node.exit(resolve));
  assert.equal(err, null);
  await first;
});

test('a port already in use is an error event, not a crash', async () => {
  const [multicastPort, port] = randomPorts(2);
  const cluster = uniqueCluster();
  const first = espial(loopbackOptions({ port, multicastPort, cluster }));
  let second;
  try {
    await waitFor(first, 'listening', 'the first node: listening');
    second = espial(loopbackOptions({ port, multicastPort, cluster }));
    const [err] = await waitFor(second, 'error', 'the second node: error');
    assert.ok(err instanceof Error);
    assert.match(err.code, /^ERR_ESPIAL_/);
    assert.ok(err.message.length > 0);
  } finally {
    await Promise.all([first.exit(), second && second.exit()]);
  }
});
