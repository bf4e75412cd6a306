'use strict';

// stats() counters and DEBUG=espial logs, on loopback.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const espial = require('..');
const { randomPorts, uniqueCluster, loopbackOptions, manualOptions, waitFor } = require('./support.js');

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

// A child process running one node with DEBUG=espial and `options` (and `setup`, code run
// with the node as `e`); it prints its stats() as JSON on stdout once `counter` is above 0
// (or after 8 s), then exits.
function debugChild(options, counter = 'key_mismatches', setup = '') {
  return new Promise((resolve, reject) => {
    const script = `const e = require(${JSON.stringify(path.join(__dirname, '..'))})(${JSON.stringify(options)});
      e.on('error', (err) => console.error('error event', err.code, err.message));
      ${setup}
      const started = Date.now();
      const poll = setInterval(() => {
        const s = e.stats();
        if (s[${JSON.stringify(counter)}] > 0 || Date.now() - started > 8000) {
          clearInterval(poll);
          console.log(JSON.stringify(s));
          e.exit();
        }
      }, 50);`;
    const env = { ...process.env, DEBUG: 'espial' };
    const child = spawn(process.execPath, ['-e', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not end; stderr: ${stderr}`));
    }, 15_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stats: stdout ? JSON.parse(stdout) : undefined, stderr });
    });
  });
}

const KEY_A = 'the first cluster key, 32 chars.';
const KEY_B = 'another cluster key, 32 chars...';

test('nodes with different cluster keys (seeds) count key_mismatches and log it under DEBUG=espial', async () => {
  const cluster = uniqueCluster();
  const [pa, pb] = randomPorts(2);
  const a = espial(manualOptions({ port: pa, cluster, cluster_key: KEY_A }));
  try {
    await waitFor(a, 'listening', 'a: listening');
    const b = await debugChild(manualOptions({ port: pb, cluster, cluster_key: KEY_B, peers: [`127.0.0.1:${pa}`] }));
    assert.equal(b.code, 0, b.stderr);
    const mine = a.stats();
    assert.ok(
      b.stats.key_mismatches > 0 || mine.key_mismatches > 0,
      `key_mismatches: ${b.stats.key_mismatches} (b), ${mine.key_mismatches} (a)`,
    );
    // Counted as handshake failures too, as before.
    assert.ok(b.stats.handshakes_failed >= b.stats.key_mismatches);
    assert.ok(mine.handshakes_failed >= mine.key_mismatches);
    assert.deepEqual(a.get_nodes(), []);
    assert.match(b.stderr, /^espial [0-9a-f]{8} refused 127\.0\.0\.1:\d+: .*cluster_key/m);
    // Rate-limited: at most one line about 127.0.0.1 per 10 s (the child lives under 10 s).
    assert.equal(b.stderr.match(/ refused 127\.0\.0\.1:/g).length, 1, b.stderr);
    assert.doesNotMatch(b.stderr, /error event/);
  } finally {
    await a.exit();
  }
});

test('nodes with different cluster keys (multicast) count key_mismatches from beacons and log it', async () => {
  const cluster = uniqueCluster();
  const [multicastPort, pa, pb] = randomPorts(3);
  const a = espial(loopbackOptions({ port: pa, multicastPort, cluster, cluster_key: KEY_A }));
  try {
    await waitFor(a, 'listening', 'a: listening');
    const b = await debugChild(loopbackOptions({ port: pb, multicastPort, cluster, cluster_key: KEY_B }));
    assert.equal(b.code, 0, b.stderr);
    assert.ok(b.stats.key_mismatches > 0, `b's key_mismatches: ${b.stats.key_mismatches}`);
    assert.ok(b.stats.beacons_ignored >= b.stats.key_mismatches);
    assert.match(b.stderr, /^espial [0-9a-f]{8} ignored a beacon of this cluster from 127\.0\.0\.1:\d+ under another cluster_key/m);
    assert.deepEqual(a.get_nodes(), []);
  } finally {
    await a.exit();
  }
});

test('a connection filter that throws is logged under DEBUG=espial and counted', async () => {
  const cluster = uniqueCluster();
  const [pa, pb] = randomPorts(2);
  // b (the child) judges a, which seeds b, with a filter that has a typo.
  const setup = 'e.connection_filter((data, cb) => cb(data.hots.match(/x/) != null));';
  const a = espial(manualOptions({ port: pa, cluster, peers: [`127.0.0.1:${pb}`] }));
  try {
    const b = await debugChild(manualOptions({ port: pb, cluster }), 'filter_errors', setup);
    assert.equal(b.code, 0, b.stderr);
    assert.ok(b.stats.filter_errors > 0, `b's filter_errors: ${b.stats.filter_errors}`);
    const aId = a.get_node_info().id;
    const line = new RegExp(`^espial [0-9a-f]{8} connection filter failed on node ${aId} \\(127\\.0\\.0\\.1:${pa}\\): it threw TypeError: .*; the node was refused$`, 'm');
    assert.match(b.stderr, line);
    // The child listens for `error`: the same failure reached it as ERR_ESPIAL_FILTER.
    assert.match(b.stderr, /^error event ERR_ESPIAL_FILTER espial: connection filter failed on node /m);
    assert.deepEqual(a.get_nodes(), []);
  } finally {
    await a.exit();
  }
});
