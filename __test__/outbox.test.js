'use strict';

// lib/packed.js's Outbox packs the sends of one tick for the addon: names and target lists
// once each, four numbers per message, payloads back to back. Checked here without the addon.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Outbox, FIELDS, unpackBatch } = require('../lib/packed.js');

// The messages of a taken batch, unpacked the way the addon reads them (unpackBatch also
// checks that the payload sizes cover the payload bytes exactly).
function unpack(batch) {
  assert.equal(batch.meta.length, batch.count * FIELDS);
  return unpackBatch(batch).map(({ name, ids, binary, payload }) => ({ name, ids, binary, text: payload.toString() }));
}

test('messages come out in order with their names, targets and bytes; names and targets once each', () => {
  const box = new Outbox();
  box.push('a', null, '{"n":1}', 1000);
  box.push('b', ['id1'], Buffer.from('raw'), 1000);
  box.push('a', ['id1'], '"é"', 1000);
  box.push('a', ['id1', 'id2'], '2', 1000);
  box.push('b', ['id1', 'id2'], '3', 1000);
  box.push('b', null, '4', 1000);
  const batch = box.take();
  assert.deepEqual(batch.names, ['a', 'b']);
  assert.deepEqual(batch.targets, [null, ['id1'], ['id1', 'id2']]);
  assert.deepEqual(unpack(batch), [
    { name: 'a', ids: null, binary: false, text: '{"n":1}' },
    { name: 'b', ids: ['id1'], binary: true, text: 'raw' },
    { name: 'a', ids: ['id1'], binary: false, text: '"é"' },
    { name: 'a', ids: ['id1', 'id2'], binary: false, text: '2' },
    { name: 'b', ids: ['id1', 'id2'], binary: false, text: '3' },
    { name: 'b', ids: null, binary: false, text: '4' },
  ]);
  assert.equal(batch.meta[10], 4, '"é" in quotes is 4 bytes of UTF-8');
});

test('a single id that looks like a list of several is still a single id', () => {
  const box = new Outbox();
  box.push('a', ['x', 'y'], '1', 100);
  box.push('a', ['["x","y"]'], '2', 100);
  const batch = box.take();
  assert.deepEqual(batch.targets, [['x', 'y'], ['["x","y"]']]);
});

test('a payload over the bound is not added and its size is returned', () => {
  const box = new Outbox();
  assert.equal(box.push('a', null, Buffer.alloc(11), 10), 11);
  assert.equal(box.push('a', null, '"' + 'é'.repeat(5) + '"', 10), 12, 'bytes of UTF-8, not characters');
  assert.equal(box.push('a', null, 'x'.repeat(11), 10), 11);
  assert.equal(box.count, 0);
  assert.equal(box.push('a', null, '"' + 'é'.repeat(4) + '"', 10), 10, 'exactly the bound is fine');
  assert.equal(box.push('a', null, Buffer.alloc(10, 1), 10), 10);
  assert.equal(box.count, 2);
  assert.equal(box.take().payload.length, 20);
});

test('the buffers grow for many and large messages, and the box is empty after take()', () => {
  const box = new Outbox();
  const big = Buffer.alloc(300 * 1024, 7);
  for (let i = 0; i < 5000; i++) box.push(`e${i % 3}`, [`n${i % 5}`], JSON.stringify({ i }), 1 << 30);
  box.push('big', null, big, 1 << 30);
  const batch = box.take();
  assert.equal(batch.count, 5001);
  assert.deepEqual(batch.names, ['e0', 'e1', 'e2', 'big']);
  assert.equal(batch.targets.length, 6);
  const messages = unpack(batch);
  for (let i = 0; i < 5000; i++) assert.equal(messages[i].text, JSON.stringify({ i }));
  assert.equal(batch.meta[5000 * FIELDS + 2], big.length);
  assert.ok(batch.payload.subarray(batch.payload.length - big.length).equals(big));
  const empty = box.take();
  assert.equal(empty.count, 0);
  assert.deepEqual(empty.names, []);
  assert.equal(empty.payload.length, 0);
  box.push('again', null, '1', 10);
  assert.deepEqual(unpack(box.take()), [{ name: 'again', ids: null, binary: false, text: '1' }]);
});

test('single targets and names in any order map to one entry each, batch after batch', () => {
  const box = new Outbox();
  for (let round = 0; round < 2; round++) {
    const sends = [['e', 'x'], ['e', 'y'], ['f', 'x'], ['e', 'z'], ['f', 'y'], ['e', 'y'], ['g', 'x']];
    for (const [name, id] of sends) box.push(name, [id], `"${name}${id}"`, 100);
    const batch = box.take();
    assert.deepEqual(batch.names, ['e', 'f', 'g'], `round ${round}`);
    assert.deepEqual(batch.targets, [['x'], ['y'], ['z']], `round ${round}`);
    assert.deepEqual(
      unpack(batch).map((m) => [m.name, m.ids[0], m.text]),
      sends.map(([name, id]) => [name, id, `"${name}${id}"`]),
    );
  }
});
