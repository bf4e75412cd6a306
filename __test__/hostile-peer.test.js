'use strict';

// Hostile data from a peer that completes a genuine handshake, against a real node in a child
// process that has NO `error` listener (as a careless application would not): metadata that
// is not JSON in the profile that follows admission, an admitted member's Update that is not
// JSON, a custom event whose text is not JSON; and a refused peer, which hears nothing of the
// membership. Any of these used to end the victim's process. The attacker
// is target/debug/examples/adversary (a test-only peer, built by `cargo test`, which npm test
// runs first); everything stays on 127.0.0.1 with multicast off.

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

test('a hostile peer cannot crash a node that has no error listener, nor forge its events', async () => {
  assert.ok(
    fs.existsSync(ADVERSARY),
    `${ADVERSARY} is missing: cargo test --no-default-features builds it (npm test runs it first)`,
  );
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [port, genuinePort] = randomPorts(2);
    const victimOptions = { ...manualOptions({ port, cluster }), metadata: { secret: 'victim' } };
    const victim = await scope.child(victimOptions, 'victim', { errorListener: false });
    await victim.events.next('listening', 'the victim listening');
    assert.equal(await victim.request('join', { event: 'work' }), true);
    // A crash comes a tick after the forged data arrives: give it time to, then check.
    const survived = async (what) => {
      await delay(200);
      const alive = victim.proc.exitCode === null && victim.proc.signalCode === null;
      assert.ok(alive, `the victim ended ${what}: ${victim.output()}`);
    };

    // 1. To a node whose filter refuses everyone: the refused peer hears the node's
    // introduction and its verdict, nothing more (no metadata, no member list).
    assert.equal(await victim.request('filter', { accept: false }), true);
    assert.deepEqual(await adversary(port, cluster, ['intro', '{', 'verdict', 'heard']), [
      'verdict false',
      'heard Introduce,Verdict',
    ]);
    await survived('after a refusal');
    assert.equal(await victim.request('filter', { accept: null }), true);
    // Metadata that is not JSON in the profile, once admitted: closed, never added.
    assert.deepEqual(await adversary(port, cluster, ['intro', '{', 'verdict', 'closed']), ['verdict true', 'closed']);
    await survived('after metadata "{" in a profile');

    // 2. An admitted member sends an Update whose metadata is not JSON: closed.
    const admitted = ['intro', '{"who":"adversary"}', 'verdict'];
    assert.deepEqual(await adversary(port, cluster, [...admitted, 'update', 'not json', 'closed']), [
      'verdict true',
      'closed',
    ]);
    await survived('after an update "not json"');

    // 3. An admitted member sends "work" (which the victim joined) as text that is not JSON,
    // twice, then once as JSON: only the last is emitted, on the same connection.
    const steps = [...admitted, 'event', 'work', 'not json', 'event', 'work', '{', 'event', 'work', '{"ok":1}'];
    assert.deepEqual(await adversary(port, cluster, [...steps, 'sleep', '300']), ['verdict true']);

    await survived('after event text that is not JSON');
    const stats = await victim.request('stats');
    assert.ok(stats.messages_refused >= 4, `messages_refused: ${stats.messages_refused}`);
    assert.deepEqual(await victim.request('received', { event: 'work' }), { count: 1, bytes: 0 });
    // Nothing forged became an event: the two admitted adversaries were added with their
    // own, valid, metadata, and nothing was ever updated.
    const added = victim.events.seen('added_node');
    assert.deepEqual(
      added.map((n) => n.metadata),
      [{ who: 'adversary' }, { who: 'adversary' }],
    );
    assert.deepEqual(victim.events.seen('updated_node'), []);

    // And it still serves: a genuine node joins it and they exchange "work" both ways.
    const genuine = scope.node(
      manualOptions({ port: genuinePort, cluster, peers: [`127.0.0.1:${port}`] }),
      'genuine',
    );
    genuine.join('work');
    const victimId = victim.node.id;
    await genuine.events.until('the genuine node to see the victim', () =>
      genuine.get_nodes().some((n) => n.id === victimId),
    );
    await eventually('a message from the genuine node', async () => {
      await genuine.send('work', { from: 'genuine' }, victimId);
      return (await victim.request('received', { event: 'work' })).count > 1;
    });
    let back = false;
    genuine.on('work', (data, from) => {
      if (from.id === victimId && data.from === 'victim') back = true;
    });
    await eventually('a message from the victim', async () => {
      assert.equal(await victim.request('send', { event: 'work', data: { from: 'victim' } }), true);
      return back;
    });
    assert.ok(victim.events.seen('added_node').some((n) => n.id === idOf(genuine)));
    await survived('at the end');
  });
});

// The `Asking` record ("I am asking member X for an answer"), from an admitted member, over a
// real socket: about a live member, 2 000 of them at once, it removes nobody and the
// connection stays (the victim asks X itself, at most once an interval); about the sender
// itself, or about the victim, it breaks the rule that a node speaks of a third member only:
// refused (`messages_refused`) and the connection closed.
test('a member saying it asks another removes nobody; about itself or the receiver, it is refused', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [port, genuinePort] = randomPorts(2);
    const victim = await scope.child(manualOptions({ port, cluster }), 'victim', { errorListener: false });
    await victim.events.next('listening', 'the victim listening');
    const genuine = scope.node(
      manualOptions({ port: genuinePort, cluster, peers: [`127.0.0.1:${port}`] }),
      'genuine',
    );
    const victimId = victim.node.id;
    await genuine.events.until('the genuine node to see the victim', () =>
      genuine.get_nodes().some((n) => n.id === victimId),
    );
    const genuineId = idOf(genuine);
    const admitted = ['intro', '{"who":"adversary"}', 'verdict'];
    const refusedBefore = (await victim.request('stats')).messages_refused;

    // About a live member, as fast as a socket takes them: nothing refused, nothing removed.
    assert.deepEqual(
      await adversary(port, cluster, [...admitted, 'asking', genuineId, '2000', 'sleep', '1500', 'whoami']).then(
        (out) => out.slice(0, 1),
      ),
      ['verdict true'],
    );
    assert.equal((await victim.request('stats')).messages_refused, refusedBefore);
    assert.ok(genuine.get_nodes().some((n) => n.id === victimId), 'the genuine node lost the victim');
    const removed = victim.events.seen('removed_node').map((n) => n.id);
    assert.ok(!removed.includes(genuineId), 'the victim removed the live member');

    // About itself, then about the victim: refused, closed.
    for (const who of ['self', 'node']) {
      assert.deepEqual(await adversary(port, cluster, [...admitted, 'asking', who, '1', 'closed']), [
        'verdict true',
        'closed',
      ]);
    }
    const stats = await victim.request('stats');
    assert.equal(stats.messages_refused, refusedBefore + 2, `messages_refused: ${stats.messages_refused}`);
    assert.ok(!victim.events.seen('removed_node').some((n) => n.id === genuineId));
    assert.ok(victim.proc.exitCode === null && victim.proc.signalCode === null, 'the victim ended');
  });
});
