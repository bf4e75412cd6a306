'use strict';

// Custom events (join, leave, send) between real nodes on loopback: reserved names, every
// target form, JSON values and Buffers, large and oversized payloads, 100 000 messages in
// order, leave(), unknown targets, and the Promise and callback forms. Every wait is bounded.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { performance } = require('node:perf_hooks');
const { WAIT_MS, randomPorts, uniqueCluster, manualOptions, withNodes, byId, ids, delay, within } = require('./support.js');
const { cluster, idOf, isProbe, ready } = require('./support.js');

const { RESERVED_EVENTS: RESERVED } = require('./support.js');

// Joins `event` on `node` and records its messages in node.events (once, however often it
// joins).
function listen(node, event) {
  node.join(event);
  node.tracked ??= new Set();
  if (!node.tracked.has(event)) node.events.track(event);
  node.tracked.add(event);
}

// What `node` received of `event` (probes left out): [{ data, from }].
const received = (node, event) =>
  node.events.log.filter((e) => e.event === event && !isProbe(e.arg)).map((e) => ({ data: e.arg, from: e.from }));

// Resolves once `node` has received `count` messages of `event` (probes left out).
const receivedCount = (node, event, count, ms = WAIT_MS) =>
  node.events.until(`${node.name}: ${count} "${event}" messages`, () => received(node, event).length >= count, ms);

test("espial's own event names cannot be joined, left or sent; names are 1 to 255 bytes", async () => {
  await withNodes(async (scope) => {
    const [port] = randomPorts(1);
    const node = scope.node(manualOptions({ port, cluster: uniqueCluster() }), 'node');
    await node.events.next('listening', 'node: listening');
    for (const name of RESERVED) {
      const reserved = { code: 'ERR_ESPIAL_RESERVED_EVENT', message: new RegExp(`"${name}"`) };
      assert.throws(() => node.join(name), reserved);
      assert.throws(() => node.leave(name), reserved);
      assert.throws(() => node.send(name, 'x'), reserved);
    }
    for (const bad of ['', 'x'.repeat(256), 7, null]) {
      assert.throws(() => node.join(bad), { name: 'TypeError' });
      assert.throws(() => node.send(bad, 'x'), { name: 'TypeError' });
    }
    node.join('x'.repeat(255));
    node.leave('x'.repeat(255));
  });
});

test('every target form: omitted, null, a node object, an id, an array of both; members that did not join get nothing', async () => {
  await withNodes(async (scope) => {
    const [a, b, c, d] = await cluster(scope, [{}, {}, {}, {}]);
    listen(b, 'ping');
    listen(c, 'ping');
    d.events.track('ping'); // a listener, but d never joins
    await Promise.all([ready(a, b, 'ping'), ready(a, c, 'ping')]);

    await a.send('ping', 'omitted');
    await a.send('ping', 'null', null);
    await a.send('ping', 'object', b.get_node_info());
    await a.send('ping', 'id', idOf(c));
    await a.send('ping', 'array', [b.get_node_info(), idOf(c)]);
    await a.send('ping', 'array of one', [idOf(b)]);
    await a.send('ping', 'nobody', []);
    // d is a member but did not join: skipped, not an error.
    await a.send('ping', 'to d', idOf(d));
    await a.send('ping', 'to d by object', [d.get_node_info()]);
    await a.send('ping', 'end');
    await Promise.all([receivedCount(b, 'ping', 6), receivedCount(c, 'ping', 5)]);
    await delay(200);

    const from = a.get_node_info();
    assert.deepEqual(received(b, 'ping'), ['omitted', 'null', 'object', 'array', 'array of one', 'end'].map((data) => ({ data, from })));
    assert.deepEqual(received(c, 'ping'), ['omitted', 'null', 'id', 'array', 'end'].map((data) => ({ data, from })));
    assert.deepEqual(received(d, 'ping'), [], 'd did not join, and got nothing');
    assert.deepEqual(received(a, 'ping'), [], 'a node does not receive its own messages');
  });
});

test('JSON values arrive as the values sent, Buffers and Uint8Arrays as Buffers of the same bytes', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{}, {}]);
    listen(b, 'data');
    await ready(a, b, 'data');
    const values = [
      { text: 'héllo ✓', n: -1.5e-7, nested: { list: [1, 'two', null, true, { deep: [] }] } },
      [1, 'two', null, false, [], {}],
      'a string',
      '',
      42,
      -0.5,
      true,
      false,
      null,
      { probe: 'not a probe' },
    ];
    const buffers = [Buffer.from([0, 1, 2, 253, 254, 255]), Buffer.alloc(0), crypto.randomBytes(4096)];
    const view = new Uint8Array([10, 11, 12, 13, 14]).subarray(1, 4);
    for (const value of values) await a.send('data', value, b.get_node_info());
    for (const buffer of buffers) await a.send('data', buffer, b.get_node_info());
    await a.send('data', view, b.get_node_info());
    const total = values.length + buffers.length + 1;
    await receivedCount(b, 'data', total);

    const got = received(b, 'data').map((m) => m.data);
    assert.equal(got.length, total);
    assert.deepEqual(got.slice(0, values.length), values);
    const binary = got.slice(values.length);
    for (const [i, expected] of [...buffers, Buffer.from([11, 12, 13])].entries()) {
      assert.ok(Buffer.isBuffer(binary[i]), `binary #${i} arrived as a Buffer`);
      assert.ok(binary[i].equals(expected), `binary #${i} arrived byte for byte`);
    }
    assert.ok(received(b, 'data').every((m) => m.from.id === idOf(a)));
  });
});

test('a 1 MiB Buffer and a 2 MiB JSON value arrive intact; a message over max_message_size is refused and never arrives', async () => {
  await withNodes(async (scope) => {
    const [a, b, small] = await cluster(scope, [{}, {}, { max_message_size: 1024 }]);
    listen(b, 'blob');
    await Promise.all([ready(a, b, 'blob'), ready(small, b, 'blob')]);

    const blob = crypto.randomBytes(1024 * 1024);
    const text = 'é'.repeat(1024 * 1024); // 2 MiB of UTF-8
    await a.send('blob', blob, idOf(b));
    await a.send('blob', { text });
    await receivedCount(b, 'blob', 2);
    const [gotBlob, gotText] = received(b, 'blob').map((m) => m.data);
    const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');
    assert.ok(Buffer.isBuffer(gotBlob));
    assert.equal(gotBlob.length, blob.length);
    assert.equal(sha256(gotBlob), sha256(blob), 'the 1 MiB Buffer arrived intact');
    assert.equal(gotText.text, text, 'the 2 MiB JSON value arrived intact');

    // `small` allows 1024 bytes of payload: exactly that goes, one more byte is refused.
    const tooLarge = (err) => {
      assert.equal(err.code, 'ERR_ESPIAL_MESSAGE_TOO_LARGE');
      assert.match(err.message, /1025 bytes/);
      assert.match(err.message, /max_message_size/);
      return true;
    };
    await small.send('blob', Buffer.alloc(1024, 1));
    await assert.rejects(small.send('blob', Buffer.alloc(1025, 2)), tooLarge);
    await assert.rejects(small.send('blob', 'x'.repeat(1023)), tooLarge); // 1025 bytes with the quotes
    tooLarge(await new Promise((resolve) => small.send('blob', Buffer.alloc(1025, 3), resolve)));
    await small.send('blob', 'end');
    await receivedCount(b, 'blob', 4);
    await delay(200);
    const fromSmall = received(b, 'blob').filter((m) => m.from.id === idOf(small)).map((m) => m.data);
    assert.equal(fromSmall.length, 2, 'only the two messages within the limit arrived');
    assert.ok(Buffer.isBuffer(fromSmall[0]) && fromSmall[0].equals(Buffer.alloc(1024, 1)));
    assert.equal(fromSmall[1], 'end');
  });
});

test('100 000 messages from one node to another arrive complete and in order', async (t) => {
  await withNodes(async (scope) => {
    const COUNT = 100_000;
    const CHUNK = 1000;
    const [a, b] = await cluster(scope, [{}, {}]);
    b.join('seq');
    await ready(a, b, 'seq');

    let next = 0;
    const outOfOrder = [];
    let allArrived;
    const arrived = new Promise((resolve) => (allArrived = resolve));
    b.on('seq', (n) => {
      if (isProbe(n)) return;
      if (n !== next && outOfOrder.length < 10) outOfOrder.push(`got ${n} where ${next} was due`);
      next = n + 1;
      if (n === COUNT - 1) allArrived();
    });
    const bId = idOf(b);
    const startedAt = performance.now();
    const sending = (async () => {
      for (let i = 0; i < COUNT; i += CHUNK) {
        const chunk = [];
        for (let n = i; n < i + CHUNK; n++) chunk.push(a.send('seq', n, bId));
        await Promise.all(chunk);
      }
    })();
    await within(60_000, Promise.all([sending, arrived]), () => `after 60 s, ${next} of ${COUNT} messages had arrived`);
    const seconds = (performance.now() - startedAt) / 1000;
    t.diagnostic(`${COUNT} messages in ${seconds.toFixed(2)} s (${Math.round(COUNT / seconds)} per second)`);
    assert.deepEqual(outOfOrder, []);
    assert.equal(next, COUNT);
    // Nothing more, nothing twice.
    await delay(200);
    assert.equal(next, COUNT);
  });
});

test('leave() stops delivery at once; joining again resumes it', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{}, {}]);
    listen(b, 'news');
    listen(b, 'marker');
    await Promise.all([ready(a, b, 'news'), ready(a, b, 'marker')]);

    await a.send('news', 1);
    await receivedCount(b, 'news', 1);
    b.leave('news');
    // Sent while b's leave may still be on its way to a: whatever arrives is not emitted.
    await a.send('news', 2);
    await a.send('news', 3, idOf(b)); // a target that no longer joined is skipped, not an error
    await a.send('marker', 'after leave');
    await receivedCount(b, 'marker', 1);
    await delay(300);
    assert.deepEqual(received(b, 'news').map((m) => m.data), [1], 'nothing after leave()');

    // Leaving again, or an event never joined, does nothing.
    b.leave('news');
    b.leave('never joined');

    listen(b, 'news');
    await ready(a, b, 'news');
    await a.send('news', 4);
    await receivedCount(b, 'news', 2);
    await delay(200);
    assert.deepEqual(received(b, 'news').map((m) => m.data), [1, 4]);
  });
});

test('an unknown or departed target rejects naming it, in the Promise and the callback forms', async () => {
  await withNodes(async (scope) => {
    const [a, b, c] = await cluster(scope, [{}, {}, {}]);
    listen(b, 'ping');
    await ready(a, b, 'ping');

    const stranger = crypto.randomUUID();
    const unknown = (id) => (err) => {
      assert.ok(err instanceof Error);
      assert.equal(err.code, 'ERR_ESPIAL_UNKNOWN_TARGET');
      assert.ok(err.message.includes(id), `the message names ${id}: ${err.message}`);
      return true;
    };
    await assert.rejects(a.send('ping', 1, stranger), unknown(stranger));
    await assert.rejects(a.send('ping', 1, [b.get_node_info(), stranger]), unknown(stranger));
    await assert.rejects(a.send('ping', 1, 'no-such-node'), unknown('no-such-node'));
    const viaCallback = await new Promise((resolve) => a.send('ping', 1, stranger, resolve));
    unknown(stranger)(viaCallback);

    // A node that has left is no target either.
    const cObject = c.get_node_info();
    await within(WAIT_MS, c.exit(), () => 'c: exit() took over 10 s');
    await a.events.next('removed_node', 'a: removed_node for c', byId(cObject.id));
    await assert.rejects(a.send('ping', 1, cObject), unknown(cObject.id));
    // Sending to everybody is fine without c.
    await a.send('ping', 'still fine');
    await receivedCount(b, 'ping', 1);
  });
});

test('the Promise and the callback forms both complete', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{}, {}]);
    listen(b, 'ping');
    await ready(a, b, 'ping');
    // Each callback settles a Promise of its own, so that the test can wait for it.
    const callback = () => {
      let cb;
      const called = new Promise((resolve) => (cb = (...args) => resolve(args)));
      return { cb, called };
    };
    const first = callback();
    const second = callback();
    const withTargets = a.send('ping', 'targets and callback', idOf(b), first.cb);
    const withoutTargets = a.send('ping', 'callback only', second.cb);
    assert.ok(withTargets instanceof Promise);
    assert.ok(withoutTargets instanceof Promise);
    assert.equal(await within(WAIT_MS, withTargets, () => 'send() with a callback did not settle'), undefined);
    assert.equal(await within(WAIT_MS, withoutTargets, () => 'send(event, data, cb) did not settle'), undefined);
    assert.deepEqual(await within(WAIT_MS, first.called, () => 'the callback was not called'), [null]);
    assert.deepEqual(await within(WAIT_MS, second.called, () => 'the callback was not called'), [null]);
    await within(WAIT_MS, a.send('ping', 'promise only'), () => 'send() did not settle');
    await receivedCount(b, 'ping', 3);
    assert.deepEqual(received(b, 'ping').map((m) => m.data), ['targets and callback', 'callback only', 'promise only']);

    // After exit() there is nobody to send to, in either form.
    await within(WAIT_MS, a.exit(), () => 'a: exit() took over 10 s');
    const notRunning = { code: 'ERR_ESPIAL_NOT_RUNNING' };
    await assert.rejects(a.send('ping', 'too late'), notRunning);
    const late = callback();
    a.send('ping', 'too late', late.cb);
    const [err] = await within(WAIT_MS, late.called, () => 'the callback was not called after exit()');
    assert.equal(err.code, 'ERR_ESPIAL_NOT_RUNNING');
  });
});

test('a receiver that stops reading holds the sender back: send() waits, queues stay bounded, nothing is lost', async (t) => {
  await withNodes(async (scope) => {
    const name = uniqueCluster();
    const [port, childPort] = randomPorts(2);
    const sender = scope.node(manualOptions({ port, cluster: name }), 'sender');
    const child = await scope.child(manualOptions({ port: childPort, cluster: name, peers: [`127.0.0.1:${port}`] }), 'receiver');
    await sender.events.next('added_node', 'sender: added_node for the receiver', byId(child.node.id));
    await child.request('join', { event: 'bulk' });
    const chunk = crypto.randomBytes(64 * 1024);
    // Until the join has reached the sender, messages to the receiver are not sent at all.
    await within(WAIT_MS, (async () => {
      while ((await child.request('received', { event: 'bulk' })).count === 0) {
        await sender.send('bulk', chunk, child.node.id);
        await delay(20);
      }
    })(), 'the receiver never got a message');
    const before = await child.request('received', { event: 'bulk' });

    // Stopped, the receiver reads nothing: its socket buffers fill, then the sender's
    // connection queue; from then on send() must wait instead of queueing more.
    child.proc.kill('SIGSTOP');
    let waiting = null;
    let settledBytes = 0;
    let sent = 0;
    try {
      const limit = 64 * 1024 * 1024; // 64 MiB settled without a wait: no backpressure at all
      while (settledBytes < limit) {
        const sending = sender.send('bulk', chunk, child.node.id);
        sent++;
        const settled = await Promise.race([sending.then(() => true), delay(1000).then(() => false)]);
        if (!settled) {
          waiting = sending;
          break;
        }
        settledBytes += chunk.length;
      }
      t.diagnostic(`send() waited after ${(settledBytes / 2 ** 20).toFixed(1)} MiB were handed over to a stopped receiver`);
      assert.ok(waiting, `every send() settled though the receiver was stopped (${settledBytes} bytes)`);
      // The connection queue (8 MiB) and the kernel's socket buffers on both ends stay well
      // under this.
      assert.ok(settledBytes < 40 * 2 ** 20, `${settledBytes} bytes handed over before send() waited`);
    } finally {
      child.proc.kill('SIGCONT');
    }
    // Reading again, the receiver drains the queue: the waiting send settles, all arrive.
    await within(WAIT_MS, waiting, 'the waiting send() never settled after the receiver went on');
    await within(WAIT_MS, (async () => {
      while ((await child.request('received', { event: 'bulk' })).count < before.count + sent) await delay(50);
    })(), 'not every message arrived');
    const after = await child.request('received', { event: 'bulk' });
    assert.equal(after.count, before.count + sent, 'each message arrived once');
    assert.equal(after.bytes, before.bytes + sent * chunk.length);
  });
});

test('a loop that awaits every send lets timers run meanwhile, and every message arrives', async () => {
  await withNodes(async (scope) => {
    const [a, b] = await cluster(scope, [{}, {}]);
    listen(b, 'tick');
    await ready(a, b, 'tick');
    let fired = 0;
    const timer = setInterval(() => fired++, 1);
    const count = 100_000;
    const started = performance.now();
    try {
      for (let i = 0; i < count; i++) await a.send('tick', i, b.get_node_info());
    } finally {
      clearInterval(timer);
    }
    const ms = performance.now() - started;
    // Before sends yielded, the loop ran in microtasks only: an interval never fired during it.
    assert.ok(fired > 0, `a 1 ms interval fired ${fired} times during ${count} awaited sends (${Math.round(ms)} ms)`);
    await receivedCount(b, 'tick', count);
    assert.deepEqual(received(b, 'tick').slice(-3).map((m) => m.data), [count - 3, count - 2, count - 1]);
  });
});
