'use strict';

// Hostile input against a running node (in a child process of its own, on loopback), which
// must keep serving its cluster with bounded memory and emit nothing forged: random bytes,
// enormous declared lengths and truncated frames on its TCP port; hundreds of stalled or
// half-open handshakes; a flood of forged multicast beacons with random ids. (Replayed and
// bit-flipped records need a real handshake: tests/hostile.rs does those in Rust.)

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const { performance } = require('node:perf_hooks');
const { runLocalNode } = require('./netns/testbed.js');
const { converge } = require('./netns/helpers.js');
const { randomPorts, uniqueCluster, manualOptions, loopbackOptions, delay } = require('./support.js');

const RSS_GROWTH_LIMIT_KB = 50 * 1024;

function rssKB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]);
}

// Runs `body(start)`; `start(options, name)` starts a node-child.js process. Every process
// is killed afterwards, whatever happened.
async function withChildren(body) {
  const children = [];
  try {
    await body(async (options, name) => {
      const child = await runLocalNode(options, name);
      children.push(child);
      return child;
    });
  } finally {
    await Promise.allSettled(children.map((c) => c.stop()));
  }
}

// Opens a TCP connection to 127.0.0.1:port; resolves once connected.
function connect(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

// Writes `bytes` on a fresh connection and resolves once the node has closed it (or after
// `ms`, with false).
async function throwAt(port, bytes, { end = false, ms = 8000 } = {}) {
  const socket = await connect(port);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, ms);
    socket.on('error', () => {});
    socket.on('data', () => {}); // the node's hello
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.write(bytes);
    if (end) socket.end();
  });
}

function framed(body) {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

// A legit member `b` joins `a` and custom events flow both ways.
async function legitJoinAndTalk(a, b, what) {
  await converge([a, b], what, 20_000);
  for (const n of [a, b]) assert.equal(await n.request('join', { event: 'work' }), true);
  await delay(300);
  const token = crypto.randomBytes(8).toString('hex');
  assert.deepEqual(await a.request('send', { event: 'work', data: { token } }), { ok: true });
  assert.deepEqual(await b.request('send', { event: 'work', data: { token } }), { ok: true });
  await b.events.next('work', `${b.name}: an event from ${a.name}`, (d) => d?.token === token);
  await a.events.next('work', `${a.name}: an event from ${b.name}`, (d) => d?.token === token);
}

// Nothing but `legit` was ever added, updated or accepted by `node`.
function assertNothingForged(node, legit) {
  const allowed = new Set(legit.map((n) => n.node.id));
  for (const event of ['added_node', 'updated_node', 'node_accepted', 'node_rejected']) {
    const strangers = node.events.seen(event, (n) => !allowed.has(n?.id));
    assert.deepEqual(strangers, [], `${node.name} emitted ${event} for nodes nobody started`);
  }
  node.events.assertNoErrors();
}

test('random bytes, enormous declared lengths and truncated frames: refused, the node keeps serving', async (t) => {
  await withChildren(async (start) => {
    const cluster = uniqueCluster();
    const [portA, portB] = randomPorts(2);
    const a = await start(manualOptions({ port: portA, cluster }), 'a');
    await a.events.next('listening', 'a: listening');
    const rssBefore = rssKB(a.pid);

    const cases = [
      ['64 KiB of random bytes', crypto.randomBytes(64 * 1024)],
      ['a declared length of 0xFFFFFFFF', Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 1, 0, 0])],
      ['a declared length of 0x7FFFFFFF, then 1 MiB', Buffer.concat([Buffer.from([0x7f, 0xff, 0xff, 0xff]), crypto.randomBytes(1 << 20)])],
      ['an empty frame', Buffer.alloc(4)],
      ['a record before any hello', framed(Buffer.concat([Buffer.from([2]), crypto.randomBytes(60)]))],
      ['a hello with garbage inside', framed(Buffer.concat([Buffer.from([1, 2, 0, 0, 200]), crypto.randomBytes(150)]))],
    ];
    for (const [what, bytes] of cases) {
      assert.ok(await throwAt(portA, bytes), `a did not close the connection after ${what}`);
    }
    // Truncated frames, then the end of the stream: closed too (a read of 0 or a timeout).
    for (const cut of [1, 3, 4, 40]) {
      const hello = framed(Buffer.concat([Buffer.from([1, 2, 0, 0, cluster.length]), Buffer.from(cluster), crypto.randomBytes(97)]));
      assert.ok(await throwAt(portA, hello.subarray(0, cut), { end: true }), `a kept a hello cut to ${cut} bytes open`);
    }
    // Many at once, in parallel.
    const parallel = await Promise.all(
      Array.from({ length: 100 }, () => throwAt(portA, crypto.randomBytes(1 + crypto.randomInt(4096)))),
    );
    assert.equal(parallel.filter((closed) => !closed).length, 0, 'every garbage connection closed');

    const b = await start(manualOptions({ port: portB, cluster, peers: [`127.0.0.1:${portA}`] }), 'b');
    await legitJoinAndTalk(a, b, 'a and a legit b after the garbage');
    const growth = rssKB(a.pid) - rssBefore;
    t.diagnostic(`a's RSS grew ${growth} kB`);
    assert.ok(growth < RSS_GROWTH_LIMIT_KB, `a's RSS grew ${growth} kB`);
    assertNothingForged(a, [b]);
  });
});

test('300 stalled or half-open handshakes: memory stays bounded and a legit node still joins', async (t) => {
  await withChildren(async (start) => {
    const cluster = uniqueCluster();
    const [portA, portB] = randomPorts(2);
    const a = await start(manualOptions({ port: portA, cluster }), 'a');
    await a.events.next('listening', 'a: listening');
    const rssBefore = rssKB(a.pid);

    const sockets = [];
    try {
      const helloStart = framed(Buffer.concat([Buffer.from([1, 2, 0, 0, cluster.length]), Buffer.from(cluster), crypto.randomBytes(97)]));
      for (let i = 0; i < 300; i++) {
        const socket = await connect(portA).catch(() => null);
        if (socket === null) continue;
        socket.on('error', () => {});
        socket.on('data', () => {});
        // Half send nothing at all; half send half a hello and stall.
        if (i % 2 === 1) socket.write(helloStart.subarray(0, 60));
        sockets.push(socket);
      }
      t.diagnostic(`${sockets.length} stalled connections open`);
      assert.ok(sockets.length >= 250, `only ${sockets.length} of 300 connections opened`);
      await delay(500);
      const rssStalled = rssKB(a.pid);

      const joinStart = performance.now();
      const b = await start(manualOptions({ port: portB, cluster, peers: [`127.0.0.1:${portA}`] }), 'b');
      await legitJoinAndTalk(a, b, 'a and a legit b while 300 handshakes stall');
      const joinMs = Math.round(performance.now() - joinStart);
      const open = sockets.filter((s) => !s.destroyed).length;
      t.diagnostic(`b joined and talked ${joinMs} ms after it started; ${open} stalled connections still open then`);
      t.diagnostic(`a's RSS: ${rssBefore} kB before, ${rssStalled} kB with the stalls, ${rssKB(a.pid)} kB after`);
      assert.ok(rssStalled - rssBefore < RSS_GROWTH_LIMIT_KB, `a's RSS grew ${rssStalled - rssBefore} kB`);
      assertNothingForged(a, [b]);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});

// A forged beacon (PROTOCOL.md, protocol version 2): "ESPB" | version | flags | cluster_len | cluster |
// id(16) | ip_len(1) | ip | port(2) | time_ms(8) | seq(8) [| mac(16)], naming 127.0.0.1, where
// the flood comes from, so that only the MAC stands between it and a dial.
function forgedBeacon(cluster, port, keyed) {
  const head = Buffer.from([0x45, 0x53, 0x50, 0x42, 2, keyed ? 1 : 0, cluster.length]);
  const addr = Buffer.from([4, 127, 0, 0, 1, 0, 0]);
  addr.writeUInt16BE(port, 5);
  const stamp = Buffer.alloc(16);
  stamp.writeBigUInt64BE(BigInt(Date.now()), 0);
  stamp.writeBigUInt64BE(1n, 8);
  const parts = [head, Buffer.from(cluster), crypto.randomBytes(16), addr, stamp];
  if (keyed) parts.push(crypto.randomBytes(16));
  return Buffer.concat(parts);
}

async function floodBeacons({ cluster, multicastPort, advertisedPort, keyed, count }) {
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
  socket.setMulticastInterface('127.0.0.1');
  socket.setMulticastLoopback(true);
  try {
    for (let sent = 0; sent < count; ) {
      const batch = [];
      for (let i = 0; i < 100 && sent < count; i++, sent++) {
        const bytes = forgedBeacon(cluster, advertisedPort, keyed);
        batch.push(new Promise((resolve) => socket.send(bytes, multicastPort, '239.255.27.27', resolve)));
      }
      await Promise.all(batch);
      await delay(5);
    }
  } finally {
    socket.close();
  }
}

// A TCP server on 127.0.0.1 that counts the connections a node makes to it and closes each
// after 50 ms.
async function dialCounter() {
  const counter = { dials: 0, peak: 0, open: 0 };
  const server = net.createServer((socket) => {
    counter.dials++;
    counter.open++;
    counter.peak = Math.max(counter.peak, counter.open);
    socket.on('error', () => {});
    socket.once('close', () => counter.open--);
    setTimeout(() => socket.destroy(), 50);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  counter.port = server.address().port;
  counter.close = () => new Promise((resolve) => server.close(resolve));
  return counter;
}

for (const keyed of [false, true]) {
  const label = keyed ? 'a keyed cluster dials none of them' : 'an unkeyed cluster stays responsive and bounded';
  test(`a flood of 3000 forged beacons with random ids: ${label}`, async (t) => {
    await withChildren(async (start) => {
      const cluster = uniqueCluster();
      const [portA, portB, multicastPort] = randomPorts(3);
      const key = keyed ? { cluster_key: crypto.randomBytes(16).toString('hex') } : {};
      const a = await start(loopbackOptions({ port: portA, multicastPort, cluster, ...key }), 'a');
      await a.events.next('listening', 'a: listening');
      const rssBefore = rssKB(a.pid);
      const counter = await dialCounter();
      try {
        const floodStart = performance.now();
        await floodBeacons({ cluster, multicastPort, advertisedPort: counter.port, keyed, count: 3000 });
        await delay(2000);
        t.diagnostic(
          `flood took ${Math.round(performance.now() - floodStart - 2000)} ms; a dialed the advertised port ${counter.dials} times (at most ${counter.peak} at once)`,
        );
        const rssFlooded = rssKB(a.pid);
        t.diagnostic(`a's RSS: ${rssBefore} kB before, ${rssFlooded} kB after the flood`);
        if (keyed) assert.equal(counter.dials, 0, 'a keyed node dialed unauthenticated beacons');
        else assert.ok(counter.dials <= 3000, `a dialed ${counter.dials} times for 3000 beacons`);
        assert.ok(rssFlooded - rssBefore < RSS_GROWTH_LIMIT_KB, `a's RSS grew ${rssFlooded - rssBefore} kB`);

        // Still serving: a legit node finds it by multicast, and events flow.
        const b = await start(loopbackOptions({ port: portB, multicastPort, cluster, ...key }), 'b');
        await legitJoinAndTalk(a, b, 'a and a legit b after the beacon flood');
        assertNothingForged(a, [b]);
      } finally {
        await counter.close();
      }
    });
  });
}
