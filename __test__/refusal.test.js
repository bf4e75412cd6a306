'use strict';

// Trap 4 of issue 16: a refused node is retried with a back-off that doubles (2 s, 4 s,
// 8 s... up to 60 s, each up to a quarter longer), on both sides, instead of every 2 s;
// and the events read the right way round: the refused node emits node_rejected(refuser)
// once per try, the refusing node emits nothing about it (no node_accepted for a node it
// refused), and neither adds the other.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { randomPorts, uniqueCluster, manualOptions, loopbackOptions, withNodes, byId, delay } = require('./support.js');

const SPAN_MS = 14_000;
// Tries at about 0, 2, 6 and 14 s: at most 4 in the span (a try every 2 s made 7 or more).
const MOST_TRIES = 4;

async function refusal(scope, mode) {
  const cluster = uniqueCluster();
  const [portA, portB, multicastPort] = randomPorts(3);
  const options = (port, hostName, extra) =>
    mode === 'seeds'
      ? manualOptions({ port, cluster, hostName, ...extra })
      : loopbackOptions({ port, multicastPort, cluster, ...extra });
  const judged = { a: 0, b: 0 };
  const a = scope.node(options(portA, 'a.internal', {}), `${mode} a`);
  a.connection_filter((data, fn) => {
    judged.a++;
    fn(false);
  });
  const peers = mode === 'seeds' ? { peers: [`127.0.0.1:${portA}`] } : {};
  const b = scope.node(options(portB, 'b.internal', peers), `${mode} b`);
  b.connection_filter((data, fn) => {
    judged.b++;
    fn(true);
  });
  await b.events.next('node_rejected', `${mode} b: node_rejected`);
  await delay(SPAN_MS);
  const aId = a.get_node_info().id;
  const bId = b.get_node_info().id;
  assert.ok(judged.a >= 1 && judged.a <= MOST_TRIES, `${mode}: a's filter ran ${judged.a} times in ${SPAN_MS} ms`);
  assert.ok(judged.b <= MOST_TRIES, `${mode}: b's filter ran ${judged.b} times in ${SPAN_MS} ms`);
  assert.equal(a.stats().nodes_rejected, judged.a, `${mode}: each try refused once`);
  assert.equal(b.events.seen('node_rejected', byId(aId)).length, judged.a, `${mode}: b hears node_rejected(a) once per refusal`);
  assert.deepEqual(a.events.seen('node_accepted'), [], `${mode}: the refusing node emits no node_accepted`);
  assert.deepEqual(a.events.seen('node_rejected'), [], `${mode}: the refusing node was refused by nobody`);
  assert.deepEqual(b.events.seen('node_accepted'), [], `${mode}: the refused node was accepted by nobody`);
  assert.deepEqual(a.events.seen('added_node', byId(bId)), []);
  assert.deepEqual(b.events.seen('added_node', byId(aId)), []);
  return judged;
}

test('a refused node is retried with a doubling back-off, and each side emits what the README says (seeds and multicast)', async (t) => {
  await withNodes(async (scope) => {
    const [seeds, multicast] = await Promise.all([refusal(scope, 'seeds'), refusal(scope, 'multicast')]);
    t.diagnostic(`filter runs in ${SPAN_MS} ms: seeds a ${seeds.a} b ${seeds.b}; multicast a ${multicast.a} b ${multicast.b}`);
  });
});
