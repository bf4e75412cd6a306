'use strict';

// The requests of one tick cross into the addon together, and so do the replies of one
// tick (lib/call-batch.js): each request still gets its own outcome, an abort before the
// batch went still cancels its request, and replies of every kind made in one tick each
// reach their asker. Real nodes on loopback; run inside `unshare -n`.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { cluster, withNodes, eventually } = require('./support.js');

async function serving(asker, server, name) {
  const id = server.get_node_info().id;
  await eventually(`${asker.name} to hear that ${server.name} serves "${name}"`, async () => {
    try {
      await asker.request(name, null, id, { timeout: 2000 });
      return true;
    } catch (err) {
      return err.code !== 'ERR_ESPIAL_NO_HANDLER';
    }
  });
}

test('requests made in one tick each get their own outcome', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{ max_message_size: 64 * 1024 }, {}]);
    b.handle('echo', (data) => data);
    await serving(a, b, 'echo');
    const bId = b.get_node_info().id;
    const outcomes = await Promise.allSettled([
      a.request('echo', 1, bId),
      a.request('echo', 2, '00'.repeat(16)),
      a.request('echo', Buffer.alloc(100 * 1024), bId),
      a.request('echo', Buffer.from('bytes'), bId),
      a.request('echo', 'é', bId),
    ]);
    assert.deepEqual(outcomes[0], { status: 'fulfilled', value: 1 });
    assert.equal(outcomes[1].reason.code, 'ERR_ESPIAL_UNKNOWN_TARGET');
    assert.match(outcomes[1].reason.message, /request\("echo"\)/);
    assert.equal(outcomes[2].reason.code, 'ERR_ESPIAL_MESSAGE_TOO_LARGE');
    assert.deepEqual(outcomes[3], { status: 'fulfilled', value: Buffer.from('bytes') });
    assert.deepEqual(outcomes[4], { status: 'fulfilled', value: 'é' });
  });
});

test('a request aborted in the tick that made it rejects at once and its reply is dropped as late', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{}, {}]);
    let handled = 0;
    b.handle('count', () => ++handled);
    await serving(a, b, 'count');
    const bId = b.get_node_info().id;
    const before = handled;
    const late = a.stats().replies_late;
    const controller = new AbortController();
    const asked = a.request('count', null, bId, { signal: controller.signal });
    const kept = a.request('count', null, bId);
    controller.abort('not now');
    const err = await asked.then(() => assert.fail('resolved'), (e) => e);
    assert.equal(err.code, 'ABORT_ERR');
    assert.equal(err.cause, 'not now');
    // The batch went with it: the handler ran, and the reply to the aborted one is late.
    assert.equal(typeof (await kept), 'number');
    await eventually('the aborted request to be answered late', () => a.stats().replies_late === late + 1);
    assert.equal(handled, before + 2);
  });
});

test('replies of every kind made in one tick reach their askers', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{}, {}]);
    b.handle('mixed', (n) => {
      if (n % 4 === 0) return n;
      if (n % 4 === 1) return Promise.resolve(Buffer.from([n]));
      if (n % 4 === 2) throw Object.assign(new Error(`no ${n}`), { code: 'E_NO' });
      return { then: (resolve) => resolve(undefined) }; // a thenable; undefined is null
    });
    await serving(a, b, 'mixed');
    const bId = b.get_node_info().id;
    const outcomes = await Promise.allSettled(Array.from({ length: 40 }, (_, n) => a.request('mixed', n, bId)));
    outcomes.forEach((o, n) => {
      if (n % 4 === 0) assert.deepEqual(o, { status: 'fulfilled', value: n });
      else if (n % 4 === 1) assert.deepEqual(o, { status: 'fulfilled', value: Buffer.from([n]) });
      else if (n % 4 === 2) assert.deepEqual(o.reason.remote, { code: 'E_NO', message: `no ${n}` });
      else assert.deepEqual(o, { status: 'fulfilled', value: null });
    });
  });
});
