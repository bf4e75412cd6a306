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

// docs/protocol-beacon.md: "ESPB" | version | flags | cluster_len | cluster | id(16) |
// ip_len | ip | port(2) | time_ms(8) | seq(8); unkeyed. The id is all 0xff: larger than any
// node's, so the node is the one that dials.
function beacon(cluster, ip, port) {
  const addr = Buffer.from([4, ...ip.split('.').map(Number), 0, 0]);
  addr.writeUInt16BE(port, 5);
  const stamp = Buffer.alloc(16);
  stamp.writeBigUInt64BE(BigInt(Date.now()), 0);
  stamp.writeBigUInt64BE(1n, 8);
  const head = Buffer.from([0x45, 0x53, 0x50, 0x42, 1, 0, cluster.length]);
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
  try {
    await withNodes(async ({ node }) => {
      const a = node(loopbackOptions({ port, multicastPort, cluster }), 'A');
      await a.events.next('listening', 'A listening');
      for (let i = 0; i < 10; i++) await send(beacon(cluster, '127.0.0.99', elsewhere.port));
      // Counters change without an event: polled, bounded.
      for (let i = 0; i < 250 && a.stats().beacons_refused < 10; i++) await delay(20);
      assert.equal(a.stats().beacons_refused, 10, JSON.stringify(a.stats()));
      await send(beacon(cluster, '127.0.0.1', here.port));
      for (let i = 0; i < 100 && here.dials === 0; i++) await delay(20);
      assert.ok(here.dials >= 1, 'the control beacon, naming its own source, was not dialed');
      assert.equal(elsewhere.dials, 0, 'the node dialed the address a beacon from elsewhere named');
      assert.equal(a.stats().beacons_refused, 10);
    });
  } finally {
    socket.close();
    await elsewhere.close();
    await here.close();
  }
});
