'use strict';

// A node is its key (issue 13), against real nodes: the adversary (target/debug/examples/
// adversary, built by `cargo test`, which npm test runs first) completes genuine handshakes
// under key pairs of its own. It claims a live member's id without holding its key, and it
// speaks another protocol version. Everything stays on 127.0.0.1 with multicast off.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const {
  withNodes,
  manualOptions,
  randomPorts,
  uniqueCluster,
  idOf,
  delay,
  ADVERSARY,
  adversary,
  eventually,
} = require('./support.js');

test('the adversary is built', () => {
  assert.ok(fs.existsSync(ADVERSARY), `${ADVERSARY} is missing: cargo test --no-default-features builds it`);
});

test("a peer claiming a live member's id without its key is not connected as it", async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [port, genuinePort] = randomPorts(2);
    const victim = scope.node(manualOptions({ port, cluster }), 'victim');
    const judged = [];
    victim.connection_filter((data, cb) => {
      judged.push(data.id);
      cb(true);
    });
    await victim.events.next('listening', 'the victim listening');
    const genuine = scope.node(manualOptions({ port: genuinePort, cluster, peers: [`127.0.0.1:${port}`] }), 'genuine');
    const genuineId = idOf(genuine);
    await victim.events.until('the victim to add the genuine node', () =>
      victim.get_nodes().some((n) => n.id === genuineId),
    );
    const before = victim.get_nodes();
    assert.deepEqual(judged, [genuineId]);

    // Its own key, the member's id: closed before any verdict, the filter never asked.
    const claimed = await adversary(port, cluster, ['--claim-id', genuineId, 'whoami', 'intro', '{}', 'verdict']);
    assert.equal(claimed.length, 3, claimed.join('\n'));
    const ownId = claimed[0].replace(/^id /, '');
    assert.notEqual(ownId, genuineId);
    assert.equal(claimed[1], `node ${victim.get_node_info().id}`, 'the victim proved its own id');
    assert.equal(claimed[2], 'verdict closed');
    await eventually('the refusal counted', () => victim.stats().messages_refused >= 1);

    // Its own key and id: a node of its own, judged by the filter as itself.
    const honest = await adversary(port, cluster, ['whoami', 'intro', '{}', 'verdict']);
    assert.equal(honest[2], 'verdict true');
    const honestId = honest[0].replace(/^id /, '');
    assert.deepEqual(judged, [genuineId, honestId]);

    // The member is untouched: the same object, never removed, never updated.
    await delay(200);
    const genuineNow = victim.get_nodes().find((n) => n.id === genuineId);
    assert.deepEqual(genuineNow, before.find((n) => n.id === genuineId));
    assert.deepEqual(victim.events.seen('removed_node').filter((n) => n.id === genuineId), []);
    assert.deepEqual(victim.events.seen('updated_node'), []);
    assert.equal(victim.events.seen('added_node').filter((n) => n.id === genuineId).length, 1);
  });
});

test('a node of another protocol version is refused, logged with both versions and counted', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [port] = randomPorts(1);
    const saved = process.env.DEBUG;
    process.env.DEBUG = 'espial';
    let victim;
    try {
      victim = await scope.child(manualOptions({ port, cluster }), 'victim');
    } finally {
      if (saved === undefined) delete process.env.DEBUG;
      else process.env.DEBUG = saved;
    }
    await victim.events.next('listening', 'the victim listening');
    assert.deepEqual(await adversary(port, cluster, ['--hello-version', '1', 'closed']), ['closed']);
    await eventually('the log line', () =>
      /peer speaks espial protocol version 1, this node speaks 2/.test(victim.output()),
    );
    const stats = await victim.request('stats');
    assert.equal(stats.version_mismatches, 1);
    assert.equal(stats.handshakes_failed, 1);
    assert.equal(stats.handshakes_completed, 0);
  });
});
