'use strict';

// lib/call-batch.js packs a tick's requests and replies for the addon (requestBatch,
// replyBatch; src/binding/call_batch.rs reads them). Checked here without the addon: a
// stand-in records what would cross, unpacked as the addon reads it.

const test = require('node:test');
const assert = require('node:assert/strict');
const { RequestBatch, ReplyBatch, REQUEST_FIELDS, REPLY_FIELDS } = require('../lib/call-batch.js');

// Entries of `fields` numbers, each with its payload's text; throws unless the sizes
// cover the payload exactly (the addon refuses such a batch).
function unpack(meta, payload, fields, lenAt) {
  const out = [];
  let start = 0;
  for (let at = 0; at < meta.length; at += fields) {
    const end = start + meta[at + lenAt];
    out.push({ m: [...meta.subarray(at, at + fields)], text: Buffer.from(payload.subarray(start, end)).toString() });
    start = end;
  }
  assert.equal(start, payload.length, 'the sizes cover the payload');
  return out;
}

test('requests: names and targets once each, five numbers a request, payloads back to back, ids back', () => {
  const batch = new RequestBatch();
  batch.push('add', 'n1', '[1,2]', false, 5000);
  batch.push('add', 'n2', Buffer.from('raw'), true, 10);
  batch.push('mul', 'n1', '"é"', false, 2 ** 31 - 1);
  assert.equal(batch.count, 3);
  let seen;
  const native = {
    requestBatch(names, targets, meta, payload, ids) {
      seen = { names, targets, entries: unpack(meta, payload, REQUEST_FIELDS, 2) };
      ids[0] = 7;
      ids[1] = 0;
      ids[2] = 8;
      return [null, { code: 'ERR_ESPIAL_UNKNOWN_TARGET', message: 'no' }, null];
    },
  };
  const { ids, failures } = batch.send(native);
  assert.deepEqual(seen.names, ['add', 'mul']);
  assert.deepEqual(seen.targets, ['n1', 'n2']);
  assert.deepEqual(seen.entries, [
    { m: [0, 0, 5, 0, 5000], text: '[1,2]' },
    { m: [0, 1, 3, 1, 10], text: 'raw' },
    { m: [1, 0, 4, 0, 2 ** 31 - 1], text: '"é"' },
  ]);
  assert.deepEqual([...ids.subarray(0, 3)], [7, 0, 8]);
  assert.equal(failures[1].code, 'ERR_ESPIAL_UNKNOWN_TARGET');
  assert.equal(batch.count, 0, 'empty after send');
  batch.push('x', 'n9', '1', false, 1);
  batch.send({
    requestBatch(names, targets, meta, payload) {
      assert.deepEqual(names, ['x'], 'the names start afresh');
      assert.deepEqual(targets, ['n9']);
      assert.deepEqual(unpack(meta, payload, REQUEST_FIELDS, 2), [{ m: [0, 0, 1, 0, 1], text: '1' }]);
      return null;
    },
  });
});

test('requests: the buffers grow for many and large payloads, and what was queued is copied', () => {
  const batch = new RequestBatch();
  const big = Buffer.alloc(100 * 1024, 1);
  const texts = [];
  for (let i = 0; i < 300; i++) {
    const text = JSON.stringify({ i, pad: 'é'.repeat(i) });
    texts.push(text);
    batch.push(`n${i % 3}`, `t${i % 5}`, text, false, i);
  }
  batch.push('n0', 't0', big, true, 1);
  big.fill(2); // after push: the batch holds the bytes as they were
  let ids;
  batch.send({
    requestBatch(names, targets, meta, payload, out) {
      ids = out;
      const entries = unpack(meta, payload, REQUEST_FIELDS, 2);
      assert.equal(entries.length, 301);
      assert.deepEqual(entries.slice(0, 300).map((e) => e.text), texts);
      assert.deepEqual(entries.slice(0, 300).map((e) => e.m[4]), [...Array(300).keys()]);
      assert.ok(payload.subarray(payload.length - big.length).every((b) => b === 1));
      assert.deepEqual(names, ['n0', 'n1', 'n2']);
      assert.deepEqual(targets, ['t0', 't1', 't2', 't3', 't4']);
      return null;
    },
  });
  assert.ok(ids.length >= 301, 'room for an id per request');
});

test('replies: peers once each, the id in two 32-bit halves, payloads back to back', () => {
  const batch = new ReplyBatch();
  const id = 2 ** 52 + 5;
  batch.push('p1', 1, 2, '{"ok":true}');
  batch.push('p2', id, 3, Buffer.from([1, 2, 3]));
  batch.push('p1', 2 ** 32, 5, Buffer.alloc(0));
  let seen;
  batch.send({
    replyBatch(peers, meta, payload) {
      seen = { peers, entries: unpack(meta, payload, REPLY_FIELDS, 4) };
    },
  });
  assert.deepEqual(seen.peers, ['p1', 'p2']);
  assert.deepEqual(seen.entries.map((e) => e.m), [
    [0, 2, 1, 0, 11],
    [1, 3, id % 2 ** 32, Math.floor(id / 2 ** 32), 3],
    [0, 5, 0, 1, 0],
  ]);
  assert.equal(seen.entries[0].text, '{"ok":true}');
  assert.equal(batch.count, 0);
});
