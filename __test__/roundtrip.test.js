'use strict';

// Both packed formats through the real addon, end to end: a send batch (lib/packed.js's
// Outbox -> src/binding/packed.rs's send_batch) and a delivery (Deliveries -> NativeMessages
// -> forEachDelivery). Three nodes on 127.0.0.1 (no multicast, seeded), so that a target
// list can name several nodes; one sends a mix that exercises every field and every way the
// addon hands a delivery's bytes over (small runs copied into V8, large runs as a Vec, a
// single large message as the Vec it arrived in). Each receiver must get exactly the
// messages addressed to it, once, intact, in send order, with the right event and sender.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { withNodes, delay, cluster, eventually, idOf, isProbe, ready } = require('./support.js');

const EVENTS = Array.from({ length: 40 }, (_, i) => `ev-${i}-${'é'.repeat(i % 4)}`);
const TICK = () => new Promise((resolve) => setImmediate(resolve));

// Everything `a` sends: [event, data, targets] where targets is 'all', 'b', 'c', 'both' or
// 'b-array' (an array of one), in groups: the messages of a group are sent in one tick.
function plan() {
  const groups = [];
  const forms = ['all', 'b', 'c', 'both', 'b-array'];
  let n = 0;
  const next = () => {
    const i = n++;
    const event = EVENTS[i % EVENTS.length];
    const targets = forms[i % forms.length];
    switch (i % 7) {
      case 0:
        return [event, { i, text: 'ünïcødé ✓', nested: [1, null, true, { x: 'y' }] }, targets];
      case 1:
        return [event, Buffer.from([i & 255, 0, 255, 10, 13]), targets];
      case 2:
        return [event, '', targets]; // JSON text `""`
      case 3:
        return [event, Buffer.alloc(0), targets]; // an empty payload
      case 4:
        return [event, null, targets];
      case 5:
        return [event, i, targets];
      default:
        return [event, crypto.randomBytes(1 + (i % 300)), targets];
    }
  };
  // Many small messages in one tick: runs copied into memory V8 owns.
  groups.push(Array.from({ length: 400 }, next));
  // Several 40 KiB messages in one tick: runs of more than 64 KiB, handed over as a Vec.
  groups.push(Array.from({ length: 6 }, (_, i) => [EVENTS[i], crypto.randomBytes(40 * 1024), i % 2 ? 'both' : 'all']));
  // One large message on its own, binary and JSON: the Vec it arrived in is handed over.
  groups.push([['big', crypto.randomBytes(3 * 1024 * 1024 + 7), 'both']]);
  groups.push([['big', { blob: 'x'.repeat(200 * 1024), tail: 'ω' }, 'b']]);
  // Across ticks: one message a tick, then small groups.
  for (let k = 0; k < 30; k++) groups.push([next()]);
  for (let k = 0; k < 10; k++) groups.push(Array.from({ length: 7 }, next));
  return groups;
}

function targetsOf(form, b, c) {
  switch (form) {
    case 'all':
      return undefined;
    case 'b':
      return idOf(b);
    case 'c':
      return c.get_node_info();
    case 'both':
      return [b.get_node_info(), idOf(c)];
    default:
      return [idOf(b)];
  }
}

const reaches = (form, who) => form === 'all' || form === 'both' || (who === 'b' ? form.startsWith('b') : form === 'c');

// Records every message of the custom events on `node`, probes left out.
function record(node) {
  const got = [];
  for (const event of [...EVENTS, 'big']) {
    node.join(event);
    node.on(event, (data, from) => {
      if (!isProbe(data)) got.push({ event, data, from: from.id, sender: from });
    });
  }
  return got;
}

test('every field of both packed formats survives the real addon, in order, once each', { timeout: 60_000 }, async () => {
  await withNodes(async (scope) => {
    const metadata = (role) => ({ metadata: { role, note: 'ø' } });
    const [a, b, c] = await cluster(scope, [metadata('a'), metadata('b'), metadata('c')]);
    const got = { a: record(a), b: record(b), c: record(c) };
    // Joins reach a peer in the order they were made: the last one arriving means all did.
    await Promise.all([ready(a, b, 'big'), ready(a, c, 'big'), ready(b, a, 'big'), ready(b, a, EVENTS[0])]);
    await Promise.all([ready(a, b, EVENTS[0]), ready(a, c, EVENTS[0])]);

    const expected = { b: [], c: [] };
    const fromB = [];
    for (const group of plan()) {
      const sends = group.map(([event, data, form]) => {
        for (const who of ['b', 'c']) if (reaches(form, who)) expected[who].push({ event, data });
        return a.send(event, data, targetsOf(form, b, c));
      });
      // The other direction in the same ticks: b's messages to everyone reach a (and c).
      const back = [EVENTS[fromB.length % EVENTS.length], { back: fromB.length }];
      fromB.push({ event: back[0], data: back[1] });
      sends.push(b.send(back[0], back[1]));
      await Promise.all(sends);
      await TICK();
    }

    const total = (who) => expected[who].length;
    // Polled: `events.until` checks again only when a node event is logged, and the last of
    // these messages can arrive after the last logged event (under load it did: a timeout
    // with every message there).
    await eventually(`b: ${total('b')} messages`, () => got.b.length >= total('b'));
    await eventually(`c: ${total('c')} messages`, () => got.c.length >= total('c') + fromB.length);
    await eventually(`a: ${fromB.length} messages`, () => got.a.length >= fromB.length);
    await delay(200); // anything sent twice would have arrived by now

    const fromA = (m) => m.from === idOf(a);
    // Sent as a Buffer or a Uint8Array: arrives as a Buffer; anything else as its JSON value.
    const normal = ({ event, data }) => ({ event, data: data instanceof Uint8Array ? Buffer.from(data) : data });
    for (const who of ['b', 'c']) {
      const mine = got[who].filter(fromA);
      assert.equal(mine.length, total(who), `${who}: as many messages from a as were sent to it`);
      for (let i = 0; i < mine.length; i++) {
        const want = normal(expected[who][i]);
        assert.equal(mine[i].event, want.event, `${who}: message ${i}'s event`);
        assert.equal(Buffer.isBuffer(mine[i].data), Buffer.isBuffer(want.data), `${who}: message ${i} binary or not`);
        assert.deepEqual(mine[i].data, want.data, `${who}: message ${i}'s data`);
      }
      assert.deepEqual(mine[0].sender, a.get_node_info(), `${who}: from is a's node object`);
    }
    assert.deepEqual(got.b.filter((m) => !fromA(m)), [], 'b hears only a');
    for (const [who, list] of [['a', got.a], ['c', got.c.filter((m) => !fromA(m))]]) {
      assert.deepEqual(list.map(({ event, data }) => ({ event, data })), fromB, `${who}: b's messages, in order`);
      assert.ok(list.every((m) => m.from === idOf(b)), `${who}: from b`);
      assert.deepEqual(list[0].sender, b.get_node_info());
    }
  });
});
