'use strict';

// A beacon is acted on only from the address it names: a forged unkeyed beacon sent from
// 127.0.0.1 but naming 127.0.0.99 (another host, as far as the node knows) makes the node
// dial nothing, and is counted in stats().beacons_refused. The control, the same beacon
// naming the address it comes from, is dialed: the test can tell the difference.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const dgram = require('node:dgram');
const net = require('node:net');
const { randomPorts, uniqueCluster, loopbackOptions, withNodes, delay } = require('./support.js');

// PROTOCOL.md ("Beacons"): "ESPB" | version | flags | cluster_len | cluster | id(16) |
// ip_len | ip | port(2) | time_ms(8) | seq(8); unkeyed. The id is all 0xff: larger than any
// node's, so the node is the one that dials. `version` is taken from a genuine beacon.
function beacon(version, cluster, ip, port) {
  const addr = Buffer.from([4, ...ip.split('.').map(Number), 0, 0]);
  addr.writeUInt16BE(port, 5);
  const stamp = Buffer.alloc(16);
  stamp.writeBigUInt64BE(BigInt(Date.now()), 0);
  stamp.writeBigUInt64BE(1n, 8);
  const head = Buffer.from([0x45, 0x53, 0x50, 0x42, version, 0, cluster.length]);
  return Buffer.concat([head, Buffer.from(cluster), Buffer.alloc(16, 0xff), addr, stamp]);
}

async function listener(host) {
  const seen = { dials: 0 };
  const server = net.createServer((socket) => {
    seen.dials++;
    socket.on('error', () => {});
    socket.destroy();
  });
  await new Promise((resolve) => server.listen(0, host, resolve));
  seen.port = server.address().port;
  seen.close = () => new Promise((resolve) => server.close(resolve));
  return seen;
}

test('a beacon naming another address than the one it comes from is refused, not dialed', async () => {
  const [port, multicastPort] = randomPorts(2);
  const cluster = uniqueCluster();
  const elsewhere = await listener('127.0.0.99');
  const here = await listener('127.0.0.1');
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
  socket.setMulticastInterface('127.0.0.1');
  const send = (bytes) => new Promise((resolve) => socket.send(bytes, multicastPort, '239.255.27.27', resolve));
  const capture = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  let version;
  capture.on('message', (msg) => (version ??= msg[4]));
  await new Promise((resolve) => capture.bind(multicastPort, '239.255.27.27', resolve));
  capture.addMembership('239.255.27.27', '127.0.0.1');
  try {
    await withNodes(async ({ node }) => {
      const a = node(loopbackOptions({ port, multicastPort, cluster }), 'A');
      await a.events.next('listening', 'A listening');
      for (let i = 0; i < 250 && version === undefined; i++) await delay(20);
      assert.ok(version !== undefined, 'no beacon of A seen');
      for (let i = 0; i < 10; i++) await send(beacon(version, cluster, '127.0.0.99', elsewhere.port));
      // Counters change without an event: polled, bounded.
      for (let i = 0; i < 250 && a.stats().beacons_refused < 10; i++) await delay(20);
      assert.equal(a.stats().beacons_refused, 10, JSON.stringify(a.stats()));
      await send(beacon(version, cluster, '127.0.0.1', here.port));
      for (let i = 0; i < 100 && here.dials === 0; i++) await delay(20);
      assert.ok(here.dials >= 1, 'the control beacon, naming its own source, was not dialed');
      assert.equal(elsewhere.dials, 0, 'the node dialed the address a beacon from elsewhere named');
      assert.equal(a.stats().beacons_refused, 10);
    });
  } finally {
    socket.close();
    capture.close();
    await elsewhere.close();
    await here.close();
  }
});

test('a keyed beacon captured off the group and sent again, or from another host, is refused', async () => {
  const [portA, portB, multicastPort] = randomPorts(3);
  const cluster = uniqueCluster();
  const key = crypto.randomBytes(16).toString('base64url');
  const capture = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  const captured = [];
  capture.on('message', (msg) => captured.push(msg));
  await new Promise((resolve) => capture.bind(multicastPort, '239.255.27.27', resolve));
  capture.addMembership('239.255.27.27', '127.0.0.1');
  const replayer = dgram.createSocket({ type: 'udp4' });
  await new Promise((resolve) => replayer.bind(0, '127.0.0.1', resolve));
  replayer.setMulticastInterface('127.0.0.1');
  const relayer = dgram.createSocket({ type: 'udp4' });
  await new Promise((resolve) => relayer.bind(0, '127.0.0.2', resolve));
  relayer.setMulticastInterface('127.0.0.1');
  const resend = (socket, bytes) => new Promise((resolve) => socket.send(bytes, multicastPort, '239.255.27.27', resolve));
  try {
    await withNodes(async ({ node }) => {
      const a = node(loopbackOptions({ port: portA, multicastPort, cluster, cluster_key: key }), 'A');
      const b = node(loopbackOptions({ port: portB, multicastPort, cluster, cluster_key: key }), 'B');
      await a.events.until('A and B joined', () => a.get_nodes().length === 1 && b.get_nodes().length === 1);
      // B's beacons carry its port (the 2 bytes after the 4-byte IPv4 address). Once three
      // have gone by, A has accepted a later one than the first, whatever the start order.
      const fromB = () => captured.filter((msg) => msg.includes(Buffer.from([4, 127, 0, 0, 1, portB >> 8, portB & 0xff])));
      for (let i = 0; i < 250 && fromB().length < 3; i++) await delay(20);
      assert.ok(fromB().length >= 3, 'B sent fewer than 3 beacons');
      const before = a.stats().beacons_refused;
      assert.equal(before, 0, 'a genuine beacon was refused');
      await resend(replayer, fromB()[0]);
      await resend(relayer, fromB()[0]);
      for (let i = 0; i < 250 && a.stats().beacons_refused < 2; i++) await delay(20);
      await delay(200);
      assert.equal(a.stats().beacons_refused, 2, JSON.stringify(a.stats()));
      assert.deepEqual(a.get_nodes().map((n) => n.id), [b.get_node_info().id]);
      assert.equal(a.events.seen('removed_node').length, 0);
    });
  } finally {
    capture.close();
    replayer.close();
    relayer.close();
  }
});
