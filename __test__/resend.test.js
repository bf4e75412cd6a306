'use strict';

// Per-pair sessions over real sockets (issue 15): a resolved send() reaches a live node
// exactly once and in order although its connection is killed from outside (`ss -K`, which
// destroys the sockets as a middlebox reset would); a node removed with messages it never
// acknowledged is reported in `undelivered`. Loopback only (run inside `unshare -n`, where
// `ss -K` touches this namespace's sockets only); every loop is bounded.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const { performance } = require('node:perf_hooks');
const { WAIT_MS, cluster, ready, withNodes, manualOptions, randomPorts, uniqueCluster, byId, delay } = require(
  './support.js',
);

const hasSs = spawnSync('ss', ['-V']).status === 0;

// Destroys every established TCP socket to or from one of `ports` (both ends of a pair's
// connection); returns how many it listed.
function killConnections(ports) {
  const filter = ports.map((p) => `sport = :${p} or dport = :${p}`).join(' or ');
  const out = execFileSync('ss', ['-K', '-t', 'state', 'established', `( ${filter} )`], { encoding: 'utf8' });
  return out.split('\n').filter((line) => /:\d+\s/.test(line)).length;
}

test('awaited sends survive connections killed from outside: each arrives once, in order', { skip: !hasSs && 'no ss' }, async (t) => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{}, {}]);
    const ports = [a, b].map((n) => n.get_node_info().port);
    const got = [];
    b.join('seq');
    await ready(a, b, 'seq');
    b.on('seq', (data) => {
      if (typeof data.n === 'number') got.push(data.n);
    });
    const TOTAL = 4000;
    let killed = 0;
    let lastKill = -1;
    for (let n = 0; n < TOTAL; n++) {
      // Untargeted: while the pair reconnects the send is kept for b, not refused.
      await a.send('seq', { n });
      if (n % 400 === 200) {
        // Only once the pair is back (an event sent after the last kill arrived): a kill
        // that catches the redial itself fails it, and a failed redial removes the peer
        // (the failure detector's rule; then `undelivered`, as the next test shows). The
        // events sent since may still be in flight, unacknowledged or not.
        const until = performance.now() + WAIT_MS;
        while (got.length <= lastKill + 1 && performance.now() < until) await delay(5);
        killed += killConnections(ports);
        lastKill = n;
      }
    }
    t.diagnostic(`${killed} sockets destroyed`);
    assert.ok(killed >= 2, `ss -K destroyed ${killed} sockets`);
    const deadline = performance.now() + WAIT_MS;
    while (got.length < TOTAL && performance.now() < deadline) await delay(20);
    assert.equal(got.length, TOTAL, `${got.length} of ${TOTAL} arrived`);
    assert.deepEqual(got, [...Array(TOTAL).keys()], 'each once, in order');
    const sa = a.stats();
    const sb = b.stats();
    t.diagnostic(`resent ${sa.messages_resent}, duplicates dropped ${sb.duplicates_dropped}`);
    assert.ok(sa.handshakes_completed >= 2, 'the pair connected again');
    assert.equal(a.events.seen('removed_node').length, 0, 'nobody removed');
    assert.equal(sa.messages_undelivered, 0);
  });
});

test('messages a removed node never acknowledged are reported in `undelivered`, in order', async () => {
  await withNodes(async (scope) => {
    const name = uniqueCluster();
    const [portA, portChild] = randomPorts(2);
    const a = scope.node(manualOptions({ port: portA, cluster: name }), 'a');
    const child = await scope.child(
      manualOptions({ port: portChild, cluster: name, peers: [`127.0.0.1:${portA}`] }),
      'child',
    );
    await a.events.next('added_node', 'a: added_node for the child', byId(child.node.id));
    await child.request('join', { event: 'seq' });
    // Probes until one arrives: the child's join has reached a.
    const deadline = performance.now() + WAIT_MS;
    while (!((await child.request('received', { event: 'seq' }))?.count > 0)) {
      assert.ok(performance.now() < deadline, 'the child never got a probe');
      await a.send('seq', { probe: true });
      await delay(20);
    }
    const reported = [];
    a.on('undelivered', (node, events) => reported.push({ node, events }));
    // Stopped, it acknowledges nothing from now on; then it dies.
    child.proc.kill('SIGSTOP');
    for (let n = 0; n < 20; n++) await a.send('seq', { n });
    await child.kill();
    await a.events.next('removed_node', 'a: removed_node for the child', byId(child.node.id));
    const until = performance.now() + WAIT_MS;
    while (reported.length === 0 && performance.now() < until) await delay(10);
    assert.equal(reported.length, 1, 'one undelivered event');
    assert.equal(reported[0].node.id, child.node.id);
    const events = reported[0].events.filter((e) => e.data.probe !== true);
    assert.deepEqual(
      events,
      [...Array(20).keys()].map((n) => ({ event: 'seq', data: { n } })),
    );
    assert.equal(a.stats().messages_undelivered, reported[0].events.length);
  });
});
