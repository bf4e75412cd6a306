'use strict';

// Manual discovery (seeds and subnet scan, no multicast) and metadata, with real nodes on
// loopback addresses only.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const {
  WAIT_MS,
  randomPorts,
  uniqueCluster,
  manualOptions,
  withNodes,
  byId,
  ids,
  delay,
  within,
} = require('./support.js');

// Resolves once every node's get_nodes() holds exactly all the others.
function allSeeAll(nodes) {
  return Promise.all(
    nodes.map((node) => {
      const others = ids(nodes.filter((other) => other !== node).map((other) => other.get_node_info()));
      return node.events.until(
        `${node.name} to see all ${others.length} others`,
        () => ids(node.get_nodes()).join() === others.join(),
      );
    }),
  );
}

// Every node's get_nodes() is exactly the others' own objects, and each was added once.
function assertFullMembership(nodes) {
  for (const node of nodes) {
    const expected = nodes.filter((other) => other !== node).map((other) => other.get_node_info());
    const byIdOrder = (a, b) => (a.id < b.id ? -1 : 1);
    assert.deepEqual(node.get_nodes().sort(byIdOrder), expected.sort(byIdOrder), `${node.name}'s get_nodes()`);
    for (const other of expected) {
      const added = node.events.seen('added_node', byId(other.id));
      assert.equal(added.length, 1, `${node.name} added ${other.host_name} once`);
    }
    assert.deepEqual(node.events.seen('removed_node'), [], `${node.name} removed nobody`);
  }
}

test('seeds only: nodes that know one seed all find each other through it', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [seedPort, ...ports] = randomPorts(4);
    const seed = scope.node(manualOptions({ port: seedPort, cluster, hostName: 'seed.test' }), 'S');
    await seed.events.next('listening', 'S: listening');
    // Started together, so that most of them learn of the others from the seed's member
    // list rather than by being dialled.
    const joiners = ['A', 'B', 'C'].map((name, i) =>
      scope.node(
        manualOptions({
          port: ports[i],
          cluster,
          hostName: `${name.toLowerCase()}.test`,
          peers: [`127.0.0.1:${seedPort}`],
        }),
        name,
      ),
    );
    const nodes = [seed, ...joiners];
    await allSeeAll(nodes);
    // Settle briefly so that a duplicate or spurious event would show.
    await delay(300);
    assertFullMembership(nodes);
    for (const node of joiners) {
      assert.deepEqual(node.events.seen('node_rejected'), [], `${node.name} was refused by nobody`);
      assert.ok(node.events.first('node_accepted', byId(seed.get_node_info().id)), `${node.name} was accepted by S`);
    }
  });
});

test(
  'subnet scan: nodes on 127.0.0.2-4 sharing one port find each other by scanning 127.0.0.0/24',
  // Linux routes all of 127.0.0.0/8 to loopback; macOS and Windows only 127.0.0.1.
  { skip: process.platform !== 'linux' && 'needs 127.0.0.2-4 on loopback (Linux)' },
  async () => {
    await withNodes(async (scope) => {
      const cluster = uniqueCluster();
      const [port] = randomPorts(1);
      const nodes = ['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((address, i) =>
        scope.node(
          manualOptions({ port, cluster, address, hostName: `scan-${i}.test`, subnets: ['127.0.0.1'] }),
          address,
        ),
      );
      assert.ok(nodes.every((node) => node.get_node_info().port === port));
      await allSeeAll(nodes);
      await delay(300);
      assertFullMembership(nodes);
      // Each is known at the address it listens on.
      for (const node of nodes) {
        for (const other of node.get_nodes()) {
          const address = nodes.find((n) => n.get_node_info().id === other.id).name;
          assert.equal(other.ip, address, `${node.name} knows ${address} by its own address`);
        }
      }
    });
  },
);

test('set_metadata() reaches the other nodes as updated_node, and get_nodes() follows', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portB, portC] = randomPorts(3);
    const a = scope.node(manualOptions({ port: portA, cluster, metadata: { v: 1 } }), 'a');
    const b = scope.node(manualOptions({ port: portB, cluster, peers: [`127.0.0.1:${portA}`] }), 'b');
    const aId = a.get_node_info().id;
    await allSeeAll([a, b]);
    assert.deepEqual(b.get_nodes()[0].metadata, { v: 1 });

    let seenInListener;
    b.on('updated_node', () => (seenInListener = b.get_nodes()));
    a.set_metadata({ v: 2 });
    assert.deepEqual(a.get_node_info().metadata, { v: 2 });
    const { arg: updated } = await b.events.next('updated_node', 'b: updated_node for a', byId(aId));
    assert.deepEqual(updated, { ...a.get_node_info(), metadata: { v: 2 } });
    assert.deepEqual(b.get_nodes(), [updated]);
    assert.deepEqual(seenInListener, [updated], 'get_nodes() had changed when updated_node was emitted');
    assert.deepEqual(a.events.seen('updated_node'), [], 'a node is not told about its own change');

    // Too big: refused by name before anything is sent, and nothing changes.
    assert.throws(() => a.set_metadata({ blob: 'x'.repeat(64 * 1024) }), (err) => {
      assert.ok(err instanceof TypeError);
      assert.equal(err.code, 'ERR_INVALID_ARG_VALUE');
      assert.match(err.message, /"metadata"/);
      assert.match(err.message, /65536 bytes/);
      return true;
    });
    assert.deepEqual(a.get_node_info().metadata, { v: 2 });

    // A node that joins later gets the current metadata with added_node.
    const c = scope.node(manualOptions({ port: portC, cluster, peers: [`127.0.0.1:${portA}`] }), 'c');
    const { arg: added } = await c.events.next('added_node', 'c: added_node for a', byId(aId));
    assert.deepEqual(added.metadata, { v: 2 });
    await allSeeAll([a, b, c]);
    await delay(300);
    assert.equal(b.events.seen('updated_node').length, 1, 'one change, one updated_node');
    assert.deepEqual(b.get_nodes().find(byId(aId)).metadata, { v: 2 });
  });
});

test('after exit() get_nodes() is empty', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portB] = randomPorts(2);
    const a = scope.node(manualOptions({ port: portA, cluster }), 'a');
    const b = scope.node(manualOptions({ port: portB, cluster, peers: [`127.0.0.1:${portA}`] }), 'b');
    await allSeeAll([a, b]);
    await within(WAIT_MS, b.exit(), () => `b: exit() took over ${WAIT_MS} ms`);
    assert.deepEqual(b.get_nodes(), []);
  });
});
