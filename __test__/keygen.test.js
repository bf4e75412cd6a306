'use strict';

// `espial keygen` makes keys nobody can guess, and a cluster keyed with one forms by
// multicast on 127.0.0.1: the key is stretched when each node starts (off the JS thread),
// and the keyed beacons, stamped and bound to their sender's address, are all accepted.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { randomPorts, uniqueCluster, loopbackOptions, withNodes } = require('./support.js');

const CLI = path.join(__dirname, '..', 'bin', 'espial.js');

function keygen(...args) {
  return spawnSync(process.execPath, [CLI, 'keygen', ...args], { encoding: 'utf8', timeout: 10_000 });
}

test('espial keygen prints a fresh 128-bit key in base64url each time', () => {
  const keys = new Set();
  for (let i = 0; i < 3; i++) {
    const out = execFileSync(process.execPath, [CLI, 'keygen'], { encoding: 'utf8', timeout: 10_000 });
    const key = out.trim();
    assert.match(key, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(Buffer.from(key, 'base64url').length, 16);
    keys.add(key);
  }
  assert.equal(keys.size, 3, 'three runs, three keys');
  const help = keygen('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: espial keygen/);
  const bad = keygen('--bits', '256');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /keygen takes no arguments/);
});

test('a cluster keyed with a generated key forms by multicast, and refuses no beacon of its own', async () => {
  const key = execFileSync(process.execPath, [CLI, 'keygen'], { encoding: 'utf8', timeout: 10_000 }).trim();
  const [portA, portB, multicastPort] = randomPorts(3);
  const cluster = uniqueCluster();
  await withNodes(async ({ node }) => {
    const options = (port) => loopbackOptions({ port, multicastPort, cluster, cluster_key: key });
    const a = node(options(portA), 'A');
    const b = node(options(portB), 'B');
    await a.events.until('A and B joined', () => a.get_nodes().length === 1 && b.get_nodes().length === 1);
    for (const n of [a, b]) {
      const stats = n.stats();
      assert.ok(stats.beacons_sent > 0);
      assert.equal(stats.beacons_refused, 0, JSON.stringify(stats));
      assert.equal(stats.key_mismatches, 0, JSON.stringify(stats));
    }
  });
});

test('the cluster_key bytes handed to the native side are wiped once copied', async () => {
  const { NativeNode } = require('../binding.js');
  const { normalizeOptions } = require('../lib/options.js');
  const native = normalizeOptions({ cluster: uniqueCluster(), cluster_key: 'a passphrase, stretched at start', network: { address: { local: '127.0.0.1' } } });
  const bytes = native.clusterKey;
  assert.equal(bytes.toString('utf8'), 'a passphrase, stretched at start');
  const node = new NativeNode(native, () => {});
  assert.ok(bytes.every((b) => b === 0), 'the option bytes are still there');
  await node.exit();
});
