'use strict';

// Request and reply (issue 20) between real nodes on loopback: every outcome, at most one
// reply across a connection killed mid-request (`ss -K`, as in resend.test.js), a target
// removed mid-request, a query with a node that never answers, and the bounds holding under
// 10 000 concurrent requests. Run inside `unshare -n`; every loop is bounded.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const { performance } = require('node:perf_hooks');
const { WAIT_MS, cluster, withNodes, manualOptions, randomPorts, uniqueCluster, byId, delay, eventually } =
  require('./support.js');

const hasSs = spawnSync('ss', ['-V']).status === 0;

function killConnections(ports) {
  const filter = ports.map((p) => `sport = :${p} or dport = :${p}`).join(' or ');
  const out = execFileSync('ss', ['-K', '-t', 'state', 'established', `( ${filter} )`], { encoding: 'utf8' });
  return out.split('\n').filter((line) => /:\d+\s/.test(line)).length;
}

// Resolves once `asker` knows that `server` serves `name`.
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

async function rejects(promise, code) {
  const err = await promise.then(
    (v) => assert.fail(`resolved with ${JSON.stringify(v)}, expected ${code}`),
    (e) => e,
  );
  assert.equal(err.code, code, err.message);
  return err;
}

test('a reply comes back, to a node object, an id, the master or whoever serves the name', async () => {
  await withNodes(async (scope) => {
    const [a, b, c] = await cluster(scope, [{}, {}, {}]);
    b.handle('add', ([x, y], from) => ({ sum: x + y, asker: from.id }));
    c.handle('add', ([x, y]) => new Promise((resolve) => setTimeout(() => resolve({ sum: x + y, by: 'c' }), 5)));
    b.handle('bytes', (data) => Buffer.concat([data, Buffer.from([9])]));
    await serving(a, b, 'add');
    await serving(a, c, 'add');
    const aId = a.get_node_info().id;
    assert.deepEqual(await a.request('add', [1, 2], b.get_node_info()), { sum: 3, asker: aId });
    assert.deepEqual(await a.request('add', [2, 2], b.get_node_info().id), { sum: 4, asker: aId });
    assert.deepEqual(await a.request('bytes', Buffer.from([1, 2]), b.get_node_info().id), Buffer.from([1, 2, 9]));
    // Omitted: the least busy, ties round-robin, so both serve some of 20 at once.
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => a.request('add', [i, 0])));
    assert.deepEqual(answers.map((r) => r.sum), [...Array(20).keys()]);
    const byC = answers.filter((r) => r.by === 'c').length;
    assert.ok(byC > 0 && byC < 20, `c answered ${byC} of 20`);
    // 'master': whichever node is master, this one included.
    await eventually('a master', () => a.get_master() !== undefined);
    a.handle('add', ([x, y]) => ({ sum: x + y, by: 'a' }));
    const viaMaster = await a.request('add', [5, 5], 'master');
    assert.equal(viaMaster.sum, 10);
    const s = a.stats();
    assert.ok(s.requests_out >= 23, `requests_out ${s.requests_out}`);
    assert.equal(s.replies_refused, 0);
  });
});

test('failures are typed: remote error without its stack, no handler, timeout, too large, unknown target', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{ max_message_size: 64 * 1024 }, {}]);
    b.handle('fail', () => {
      throw Object.assign(new Error('no such job'), { code: 'E_JOB' });
    });
    b.handle('reject', async () => Promise.reject(new RangeError('out of range')));
    b.handle('slow', () => new Promise((resolve) => setTimeout(() => resolve('late'), 300)));
    b.handle('big', () => Buffer.alloc(100 * 1024));
    await serving(a, b, 'fail');
    const bId = b.get_node_info().id;

    const remote = await rejects(a.request('fail', {}, bId), 'ERR_ESPIAL_REMOTE');
    assert.deepEqual(remote.remote, { code: 'E_JOB', message: 'no such job' });
    assert.match(remote.message, /no such job/);
    assert.doesNotMatch(JSON.stringify({ ...remote, message: remote.message }), /at .*requests\.test\.js/, 'no remote stack');
    const rejected = await rejects(a.request('reject', {}, bId), 'ERR_ESPIAL_REMOTE');
    assert.deepEqual(rejected.remote, { code: 'RangeError', message: 'out of range' });

    await rejects(a.request('nobody', {}), 'ERR_ESPIAL_NO_HANDLER');
    await rejects(a.request('nobody', {}, bId), 'ERR_ESPIAL_NO_HANDLER');

    const started = performance.now();
    await rejects(a.request('slow', {}, bId, { timeout: 100 }), 'ERR_ESPIAL_TIMEOUT');
    const took = performance.now() - started;
    assert.ok(took >= 95 && took < 290, `timed out after ${took} ms`);
    // The handler's reply comes after the timeout: dropped and counted, never delivered.
    await eventually('the late reply to be counted', () => a.stats().replies_late === 1);

    await rejects(a.request('fail', Buffer.alloc(200 * 1024), bId), 'ERR_ESPIAL_MESSAGE_TOO_LARGE');
    await rejects(a.request('big', {}, bId), 'ERR_ESPIAL_MESSAGE_TOO_LARGE');
    await rejects(a.request('fail', {}, '00'.repeat(16)), 'ERR_ESPIAL_UNKNOWN_TARGET');
    assert.throws(() => a.request('fail', {}, bId, { timeout: -1 }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => a.request('', {}, bId), { code: 'ERR_INVALID_ARG_VALUE' });
  });
});

test('an AbortSignal aborts as Node does; a reply after it is dropped and counted', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{}, {}]);
    let calls = 0;
    b.handle('slow', () => {
      calls++;
      return new Promise((resolve) => setTimeout(() => resolve('done'), 200));
    });
    await serving(a, b, 'slow');
    const bId = b.get_node_info().id;
    assert.equal(calls, 1, 'the probe of serving()');

    const before = AbortSignal.abort('why');
    const early = await rejects(a.request('slow', {}, bId, { signal: before }), 'ABORT_ERR');
    assert.equal(early.name, 'AbortError');
    assert.equal(early.cause, 'why');

    const controller = new AbortController();
    const pending = a.request('slow', {}, bId, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('changed my mind')), 50);
    const err = await rejects(pending, 'ABORT_ERR');
    assert.equal(err.name, 'AbortError');
    assert.equal(err.cause.message, 'changed my mind');
    const late = a.stats().replies_late;
    await eventually('the aborted request\'s reply to be counted late', () => a.stats().replies_late === late + 1);
  });
});

test('a request and its reply arrive once although the connection is killed mid-request', { skip: !hasSs && 'no ss' }, async (t) => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{}, {}]);
    const ports = [a, b].map((n) => n.get_node_info().port);
    let handled = 0;
    let running = null;
    b.handle('work', (n) => {
      if (n === null) return 'ready'; // serving()'s probe
      handled++;
      return new Promise((resolve) => {
        running = () => resolve(n * 2);
      });
    });
    await serving(a, b, 'work');
    const bId = b.get_node_info().id;
    for (let round = 0; round < 3; round++) {
      running = null;
      const before = handled;
      const asked = a.request('work', 21 + round, bId, { timeout: 20000 });
      await eventually('the handler to start', () => running !== null);
      // Killed while the handler runs: the reply goes out on the next connection.
      const killed = killConnections(ports);
      t.diagnostic(`round ${round}: ${killed} sockets destroyed`);
      assert.ok(killed >= 1);
      running();
      assert.equal(await asked, (21 + round) * 2);
      assert.equal(handled, before + 1, 'the handler ran once');
    }
    // And killed between the request and the handler: the request is replayed, not doubled.
    for (let round = 0; round < 3; round++) {
      running = null;
      const before = handled;
      const asked = a.request('work', round, bId, { timeout: 20000 });
      killConnections(ports);
      await eventually('the handler to start', () => running !== null);
      running();
      assert.equal(await asked, round * 2);
      await delay(50);
      assert.equal(handled, before + 1, 'the handler ran once');
    }
    assert.equal(a.events.seen('removed_node').length, 0, 'nobody removed');
    assert.equal(a.stats().replies_late + a.stats().replies_refused, 0);
  });
});

test('a target that leaves or dies mid-request fails it at once, not at the timeout', async () => {
  await withNodes(async (scope) => {
    const name = uniqueCluster();
    const [portA, portB, portChild] = randomPorts(3);
    const a = scope.node(manualOptions({ port: portA, cluster: name }), 'a');
    const b = scope.node(manualOptions({ port: portB, cluster: name, peers: [`127.0.0.1:${portA}`] }), 'b');
    const child = await scope.child(manualOptions({ port: portChild, cluster: name, peers: [`127.0.0.1:${portA}`] }), 'child');
    await a.events.next('added_node', 'a: added child', byId(child.node.id));
    await a.events.until('a to see b', () => a.get_nodes().some((n) => n.id === b.get_node_info().id));
    await child.request('handle', { name: 'never', ms: null });
    b.handle('never', () => new Promise(() => {}));
    await eventually('a to hear both serve', () => a.query('never', null, { timeout: 1 }).then((r) => r.length === 2));

    let started = performance.now();
    const toChild = rejects(a.request('never', {}, child.node.id, { timeout: 30000 }), 'ERR_ESPIAL_TARGET_LEFT');
    await eventually('the child to run it', async () => (await child.request('received', { event: 'handled:never' })) >= 1);
    await child.kill();
    await toChild;
    let took = performance.now() - started;
    assert.ok(took < 5000, `failed after ${took} ms`);

    started = performance.now();
    const toB = rejects(a.request('never', {}, b.get_node_info().id, { timeout: 30000 }), 'ERR_ESPIAL_TARGET_LEFT');
    await delay(100);
    await b.exit();
    await toB;
    took = performance.now() - started;
    assert.ok(took < 2000, `failed after ${took} ms`);
  });
});

test('a query collects every answer, and a timeout for the node that never answers', async () => {
  await withNodes(async (scope) => {
    const [a, b, c, d] = await cluster(scope, [{}, {}, {}, {}]);
    b.handle('who', () => 'b');
    c.handle('who', () => new Promise(() => {}));
    d.handle('who', () => {
      throw new Error('d fails');
    });
    await serving(a, b, 'who');
    await serving(a, d, 'who');
    await eventually('a to hear c serves', () => a.query('who', null, { timeout: 1 }).then((r) => r.length === 3));
    const started = performance.now();
    const results = await a.query('who', null, { timeout: 300 });
    const took = performance.now() - started;
    assert.ok(took >= 290 && took < 2000, `settled after ${took} ms`);
    const by = new Map(results.map((r) => [r.from.id, r]));
    assert.equal(by.get(b.get_node_info().id).value, 'b');
    assert.equal(by.get(c.get_node_info().id).error.code, 'ERR_ESPIAL_TIMEOUT');
    assert.equal(by.get(d.get_node_info().id).error.code, 'ERR_ESPIAL_REMOTE');
    // Every node answers: settled at once, not at the deadline.
    c.unhandle('who');
    await eventually('a to hear c stopped', () => a.query('who', null, { timeout: 1 }).then((r) => r.length === 2));
    const quick = performance.now();
    const two = await a.query('who', null, { timeout: 10000 });
    assert.equal(two.length, 2);
    assert.ok(performance.now() - quick < 5000);
  });
});

test('10 000 concurrent requests: the in-flight and handler bounds hold and every one is answered', async () => {
  await withNodes(async (scope) => {
    const PER_TARGET = 64;
    const CONCURRENCY = 8;
    const [a, b] = await cluster(scope, [
      { max_requests_per_target: PER_TARGET, max_requests: 100 },
      { max_handler_concurrency: CONCURRENCY },
    ]);
    let running = 0;
    let maxRunning = 0;
    let outstanding = 0; // received by b's handler queue and not yet answered
    let maxOutstanding = 0;
    b.handle('sq', async (n) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await delay(0);
      running--;
      return n * n;
    });
    await serving(a, b, 'sq');
    const bId = b.get_node_info().id;
    const N = 10000;
    const out = [];
    let done = 0;
    for (let i = 0; i < N; i++) {
      out.push(
        a.request('sq', i, bId, { timeout: 60000 }).then((v) => {
          done++;
          return v;
        }),
      );
    }
    // Sampled while it runs: what b holds unanswered never passes a's per-target bound.
    const sampler = setInterval(() => {
      const s = b.stats();
      outstanding = s.requests_in - 1 - done; // less serving()'s probe
      maxOutstanding = Math.max(maxOutstanding, outstanding);
    }, 1);
    try {
      const got = await Promise.all(out);
      assert.equal(got.length, N);
      for (let i = 0; i < N; i++) assert.equal(got[i], i * i);
    } finally {
      clearInterval(sampler);
    }
    assert.ok(maxRunning <= CONCURRENCY, `${maxRunning} handlers ran at once`);
    assert.ok(maxOutstanding <= PER_TARGET, `${maxOutstanding} unanswered at b at once`);
    assert.equal(a.stats().requests_out, N + 1);
  });
});

test('a handler slower than the failure detector does not get its node removed', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{ send_presence_frequency: 200 }, { send_presence_frequency: 200 }]);
    b.handle('slow', () => new Promise((resolve) => setTimeout(() => resolve('finally'), 2500)));
    await serving(a, b, 'slow').catch(() => {});
    assert.equal(await a.request('slow', {}, b.get_node_info().id, { timeout: WAIT_MS }), 'finally');
    assert.equal(a.events.seen('removed_node').length, 0);
  });
});
