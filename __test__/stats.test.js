'use strict';

// stats() counters and DEBUG=espial logs, on loopback.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const espial = require('..');
const { randomPorts, uniqueCluster, loopbackOptions, waitFor } = require('./support.js');

test('stats() counts messages, bytes and handshakes', async () => {
  const cluster = uniqueCluster();
  const [multicastPort, pa, pb] = randomPorts(3);
  const a = espial(loopbackOptions({ port: pa, multicastPort, cluster }));
  const b = espial(loopbackOptions({ port: pb, multicastPort, cluster }));
  try {
    const zero = a.stats();
    assert.equal(zero.messages_out, 0);
    assert.equal(zero.handshakes_completed, 0);
    b.join('count');
    const bId = () => b.get_node_info().id;
    await waitFor(a, 'added_node', 'a: added_node for b', (n) => n.id === bId());
    let received = 0;
    const all = new Promise((resolve) => {
      b.on('count', () => {
        received += 1;
        if (received === 10) resolve();
      });
    });
    // Until b's join has reached a, sends to "everyone" skip b: retry until one lands.
    for (let i = 0; i < 200 && received === 0; i++) {
      await a.send('count', { probe: i });
      await new Promise((r) => setTimeout(r, 10));
    }
    const before = a.stats().messages_out;
    for (let i = 0; i < 9; i++) await a.send('count', { i });
    await Promise.race([all, new Promise((_, reject) => setTimeout(() => reject(new Error('messages did not arrive')), 10_000))]);
    const sa = a.stats();
    const sb = b.stats();
    assert.equal(sa.messages_out - before, 9);
    assert.ok(sb.messages_in >= 10, `b counted ${sb.messages_in} messages in`);
    assert.ok(sa.bytes_out > 0 && sb.bytes_in > 0);
    assert.ok(sa.handshakes_completed >= 1 && sb.handshakes_completed >= 1);
    assert.equal(sa.handshakes_failed, 0);
    assert.ok(sa.beacons_sent >= 1);
  } finally {
    await Promise.all([a.exit(), b.exit()]);
  }
});

test('DEBUG=espial writes readable logs on stderr; without it the core is silent', async () => {
  const run = (debug) =>
    new Promise((resolve, reject) => {
      const cluster = uniqueCluster();
      const [multicastPort, port] = randomPorts(2);
      const options = JSON.stringify(loopbackOptions({ port, multicastPort, cluster }));
      const script = `const e = require(${JSON.stringify(path.join(__dirname, '..'))})(${options});
        e.on('listening', () => e.exit());`;
      const env = { ...process.env, DEBUG: debug };
      const child = spawn(process.execPath, ['-e', script], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error('child did not end'));
      }, 10_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
  const on = await run('espial');
  assert.equal(on.code, 0);
  assert.match(on.stderr, /^espial [0-9a-f]{8} listening on 127\.0\.0\.1:\d+ as /m);
  const off = await run('express');
  assert.equal(off.code, 0);
  assert.equal(off.stderr, '');
});
