'use strict';

// Failure detection and departures, with nodes in child processes where a process has to
// crash or stall: kill -9, a blocked event loop, graceful exit, a restart with a new id.
// Loopback only; every wait is bounded.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { performance } = require('node:perf_hooks');
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

// The parent-side node `member` and a child node `child` (seeding it) have seen each other.
async function joined(member, child) {
  const memberId = member.get_node_info().id;
  await Promise.all([
    member.events.next('added_node', `${member.name}: added_node for ${child.name}`, byId(child.node.id)),
    child.events.next('added_node', `${child.name}: added_node for ${member.name}`, byId(memberId)),
  ]);
}

test('a crashed process (kill -9) is removed within 1.5 s, once', async (t) => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portChild] = randomPorts(2);
    // Default send_presence_frequency (300 ms): silence alone takes 1.9 s to remove a node,
    // at least 1.6 s after the kill (its last probe came at most an interval before), so
    // only the crash path (connection reset, redial refused) can be this quick.
    const a = scope.node(manualOptions({ port: portA, cluster }), 'a');
    const childOptions = manualOptions({ port: portChild, cluster, peers: [`127.0.0.1:${portA}`] });
    const child = await scope.child(childOptions, 'child');
    await joined(a, child);

    const killedAt = await child.kill();
    const { arg: removed, at } = await a.events.next(
      'removed_node',
      'a: removed_node for the killed child',
      byId(child.node.id),
    );
    const elapsed = at - killedAt;
    t.diagnostic(`removed ${Math.round(elapsed)} ms after kill -9`);
    assert.ok(elapsed < 1500, `removed ${Math.round(elapsed)} ms after kill -9; expected under 1500 ms`);
    assert.deepEqual(removed, child.node);
    assert.deepEqual(a.get_nodes(), []);

    // Once: neither the redial loop nor a later heartbeat timeout reports it again.
    await delay(1500);
    assert.equal(a.events.seen('removed_node', byId(child.node.id)).length, 1, 'removed_node fired once');
    assert.deepEqual(a.get_nodes(), []);
  });
});

test('a node whose JS event loop is blocked for 3 s is not removed, and removes nobody', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portChild] = randomPorts(2);
    // Heartbeats every 200 ms: a silence of 3 heartbeats + 1 s is 1.6 s, well inside the
    // 3 s block, so this only passes if heartbeats do not wait for the JS event loop.
    const a = scope.node(manualOptions({ port: portA, cluster, send_presence_frequency: 200 }), 'a');
    const child = await scope.child(
      manualOptions({ port: portChild, cluster, peers: [`127.0.0.1:${portA}`], send_presence_frequency: 200 }),
      'child',
    );
    await joined(a, child);

    const blockedAt = performance.now();
    const blocking = child.request('block', { ms: 3000 });
    await delay(4000);
    const blockedMs = await within(1000, blocking, () => 'the child did not come back from its block');
    assert.ok(blockedMs >= 3000, `the child's event loop was blocked for ${blockedMs} ms`);
    assert.ok(performance.now() - blockedAt >= 4000);

    assert.deepEqual(a.events.seen('removed_node'), [], 'a removed nobody while the child was blocked');
    assert.deepEqual(a.get_nodes(), [child.node]);
    assert.deepEqual(child.events.seen('removed_node'), [], 'the child removed nobody once unblocked');
    assert.deepEqual(ids(await child.request('get_nodes')), [a.get_node_info().id]);

    // Then both leave: the child gracefully, seen by a at once, then a.
    const removed = a.events.next('removed_node', 'a: removed_node for the child', byId(child.node.id));
    assert.deepEqual(await child.request('exit'), [], "the child's get_nodes() after exit()");
    await removed;
    const { code, signal } = await within(WAIT_MS, child.exited, () => 'the child did not end after exit()');
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, child.output());
    await within(WAIT_MS, a.exit(), () => `a: exit() took over ${WAIT_MS} ms`);
  });
});

// Connections are read on the JS thread while it is idle (src/driver/shared_read.rs); while
// a listener keeps it busy, the espial thread must read instead: a's sends need the child's
// acknowledgements (max_unacked_bytes is 64 KiB, and 160 KiB are sent during the block), so
// they all resolve before the block ends only if the child's bytes are read meanwhile.
test('a listener blocking the JS thread for 3 s: its connections are still read, nothing is lost, nobody removed', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portChild] = randomPorts(2);
    const a = scope.node(
      manualOptions({ port: portA, cluster, send_presence_frequency: 200, max_unacked_bytes: 65536 }),
      'a',
    );
    const child = await scope.child(
      manualOptions({ port: portChild, cluster, peers: [`127.0.0.1:${portA}`], send_presence_frequency: 200 }),
      'child',
    );
    await joined(a, child);
    assert.equal(await child.request('join_ordered', { event: 'work' }), true);
    // Until the join has reached a, a's sends reach nobody.
    await within(WAIT_MS, (async () => {
      while ((await child.request('received', { event: 'work' })).count === 0) {
        await a.send('work', { probe: true }, child.node.id);
        await delay(20);
      }
    })(), () => 'the child never got a probe');

    child.events.track('unblocked');
    const unblocked = child.events.next('unblocked', 'the child: its listener came back from the block', () => true, 10_000);
    let blockOver = false;
    unblocked.then(() => (blockOver = true), () => {});
    await a.send('work', { block: 3000 }, child.node.id);
    const filler = 'x'.repeat(2000);
    const COUNT = 80;
    for (let i = 0; i < COUNT; i++) {
      await a.send('work', { i, filler }, child.node.id);
      await delay(5);
    }
    const sentDuringBlock = !blockOver;
    const { arg: blockedMs } = await unblocked;
    assert.ok(blockedMs >= 3000, `the child's listener blocked for ${blockedMs} ms`);
    assert.ok(sentDuringBlock, "a's sends waited for the child's JS thread: nobody read its connection while it was busy");

    const deadline = performance.now() + WAIT_MS;
    let got;
    while ((got = await child.request('received', { event: 'work' })).order.length < COUNT) {
      assert.ok(performance.now() < deadline, `only ${got.order.length} of ${COUNT} arrived`);
      await delay(50);
    }
    assert.deepEqual(got.order, Array.from({ length: COUNT }, (_, i) => i), 'every message once, in order');
    await delay(500);
    assert.deepEqual(a.events.seen('removed_node'), [], 'a removed nobody');
    assert.deepEqual(child.events.seen('removed_node'), [], 'the child removed nobody');
    assert.deepEqual(ids(await child.request('get_nodes')), [a.get_node_info().id]);
  });
});

test('graceful exit: the other node emits removed_node within 500 ms, once', async (t) => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portB] = randomPorts(2);
    // Default send_presence_frequency: silence (1.9 s) could not do this in 500 ms.
    const a = scope.node(manualOptions({ port: portA, cluster }), 'a');
    const b = scope.node(manualOptions({ port: portB, cluster, peers: [`127.0.0.1:${portA}`] }), 'b');
    const bId = b.get_node_info().id;
    await Promise.all([
      a.events.next('added_node', 'a: added_node for b', byId(bId)),
      b.events.next('added_node', 'b: added_node for a', byId(a.get_node_info().id)),
    ]);

    const exitAt = performance.now();
    const exiting = b.exit();
    const { arg: removed, at } = await a.events.next('removed_node', 'a: removed_node for b', byId(bId));
    const elapsed = at - exitAt;
    t.diagnostic(`removed ${Math.round(elapsed)} ms after exit()`);
    assert.ok(elapsed < 500, `removed ${Math.round(elapsed)} ms after exit(); expected under 500 ms`);
    assert.deepEqual(removed, b.get_node_info());
    await within(WAIT_MS, exiting, () => `b: exit() took over ${WAIT_MS} ms`);
    assert.deepEqual(a.get_nodes(), []);
    assert.deepEqual(b.get_nodes(), []);

    await delay(1000);
    assert.equal(a.events.seen('removed_node', byId(bId)).length, 1, 'removed_node fired once');
    assert.deepEqual(a.get_nodes(), []);
  });
});

test('a node restarted on the same address and port with a new id: old one removed, new one added', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portChild] = randomPorts(2);
    const a = scope.node(manualOptions({ port: portA, cluster }), 'a');
    const childOptions = manualOptions({ port: portChild, cluster, peers: [`127.0.0.1:${portA}`] });
    const first = await scope.child(childOptions, 'first child');
    await joined(a, first);

    await first.kill();
    const second = await scope.child(childOptions, 'second child');
    assert.notEqual(second.node.id, first.node.id);
    assert.equal(second.node.port, first.node.port);
    assert.equal(second.node.ip, first.node.ip);

    await Promise.all([
      a.events.next('removed_node', 'a: removed_node for the first child', byId(first.node.id)),
      joined(a, second),
    ]);
    await a.events.until('a to see only the second child', () => ids(a.get_nodes()).join() === second.node.id);
    assert.deepEqual(a.get_nodes(), [second.node]);
    await delay(500);
    assert.equal(a.events.seen('removed_node', byId(first.node.id)).length, 1, 'the old id was removed once');
    assert.equal(a.events.seen('added_node', byId(second.node.id)).length, 1, 'the new id was added once');
    assert.deepEqual(a.events.seen('removed_node', byId(second.node.id)), [], 'the new id was not removed');
    assert.deepEqual(a.get_nodes(), [second.node]);
  });
});
