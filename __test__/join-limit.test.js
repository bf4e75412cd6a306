'use strict';

// join() past the number of custom events a node may join, or past the bytes of their names,
// is refused with a stable code, the same before start() and while running, and the refused
// event is not joined.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const espial = require('..');
const { WAIT_MS, manualOptions, randomPorts, uniqueCluster, waitFor } = require('./support.js');

// crate::core::message::MAX_JOINED
const MAX_JOINED = 4096;
// crate::core::subscriptions::MAX_JOINED_BYTES
const MAX_JOINED_BYTES = 64 * 1024;

function isTooMany(err) {
  assert.equal(err.code, 'ERR_ESPIAL_TOO_MANY_EVENTS');
  assert.match(err.message, /^espial: join\(\): /);
  assert.match(err.message, /4096/);
  return true;
}

function joinUpToTheLimit(node, prefix) {
  for (let i = 0; i < MAX_JOINED; i++) node.join(`${prefix}${i}`);
}

test('join() past the limit throws ERR_ESPIAL_TOO_MANY_EVENTS before start', async () => {
  const node = espial(manualOptions({ port: randomPorts(1)[0], cluster: uniqueCluster() }));
  try {
    // Synchronously after construction: the node has not started yet.
    joinUpToTheLimit(node, 'before-');
    assert.throws(() => node.join('one-too-many'), isTooMany);
    // An event joined already is no new one; leaving one makes room for another.
    node.join('before-0');
    node.leave('before-1');
    node.join('instead');
    assert.throws(() => node.join('one-too-many'), isTooMany);
    // What was kept before start counts once running as well.
    await waitFor(node, 'listening', 'listening', undefined, WAIT_MS);
    assert.throws(() => node.join('one-too-many'), isTooMany);
    assert.equal(node.listenerCount('one-too-many'), 0);
  } finally {
    await node.exit();
  }
});

test('join() past the limit throws ERR_ESPIAL_TOO_MANY_EVENTS while running', async () => {
  const node = espial(manualOptions({ port: randomPorts(1)[0], cluster: uniqueCluster() }));
  try {
    await waitFor(node, 'listening', 'listening', undefined, WAIT_MS);
    joinUpToTheLimit(node, 'running-');
    assert.throws(() => node.join('one-too-many'), isTooMany);
    // Refused means not joined: a second try is refused again rather than taken as joined.
    assert.throws(() => node.join('one-too-many'), isTooMany);
    node.leave('running-0');
    node.join('one-too-many');
  } finally {
    await node.exit();
  }
});

test('join() past 64 KiB of event names throws ERR_ESPIAL_TOO_MANY_EVENTS, before start and while running', async () => {
  const node = espial(manualOptions({ port: randomPorts(1)[0], cluster: uniqueCluster() }));
  const longest = (i) => String(i).padStart(255, '0');
  const fit = Math.floor(MAX_JOINED_BYTES / 255);
  const isOverBytes = (err) => {
    assert.equal(err.code, 'ERR_ESPIAL_TOO_MANY_EVENTS');
    assert.match(err.message, /^espial: join\(\): .*65536 bytes/);
    return true;
  };
  try {
    for (let i = 0; i < fit; i++) node.join(longest(i));
    assert.throws(() => node.join(longest(fit)), isOverBytes);
    await waitFor(node, 'listening', 'listening', undefined, WAIT_MS);
    assert.throws(() => node.join(longest(fit)), isOverBytes);
    // The one byte left still takes a one-byte name; leaving one makes room for another.
    node.join('x');
    node.leave(longest(0));
    node.join(longest(fit));
  } finally {
    await node.exit();
  }
});
