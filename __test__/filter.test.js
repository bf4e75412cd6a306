'use strict';

// connection_filter with real nodes on loopback: accepting, rejecting, throwing, timing out,
// and the ways a filter can answer. Each newcomer knows only its seed (no multicast).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { performance } = require('node:perf_hooks');
const { randomPorts, uniqueCluster, manualOptions, withNodes, byId, ids, delay, within } = require('./support.js');

// The README's host-name example, word for word.
const readmeFilter = (data, cb) => cb(/\.org\.internal$/.test(data.host_name));

// A node as a filter or node_rejected sees it: no metadata, which crosses only after admission.
function judged(info) {
  const { metadata, ...candidate } = info;
  assert.ok(metadata !== undefined, 'a node object has metadata');
  return candidate;
}

// Starts member `a` (host a.org.internal) with `filter` set right after construction, then a
// newcomer `b` seeding it; resolves once b has been accepted or refused by a.
// With `failing`, a's filter is expected to fail: its ERR_ESPIAL_FILTER errors are allowed.
async function admission(scope, { filter, newcomerHost, memberOptions = {}, newcomerFilter, failing = false }) {
  const cluster = uniqueCluster();
  const [portA, portB] = randomPorts(2);
  const calls = [];
  const a = scope.node(manualOptions({ port: portA, cluster, hostName: 'a.org.internal', ...memberOptions }), 'a');
  if (failing) a.events.allowErrors('ERR_ESPIAL_FILTER');
  // Set after the constructor, as the original's users did; the node starts on the next tick.
  a.connection_filter(function (data, cb) {
    calls.push({ data, at: performance.now() });
    return filter.call(this, data, cb);
  });
  await a.events.next('listening', 'a: listening');
  const seed = [`127.0.0.1:${portA}`];
  const b = scope.node(manualOptions({ port: portB, cluster, hostName: newcomerHost, peers: seed }), 'b');
  if (newcomerFilter) b.connection_filter(newcomerFilter);
  const aId = a.get_node_info().id;
  const decided = (e) => (e.event === 'node_accepted' || e.event === 'node_rejected') && e.arg.id === aId;
  await b.events.until('b: node_accepted or node_rejected from a', () => b.events.log.some(decided));
  const decision = b.events.log.find(decided);
  return { a, b, calls, outcome: decision.event === 'node_accepted' ? 'accepted' : 'rejected', decision };
}

// b was admitted: each side has the other, and b heard it from a.
async function assertAdmitted({ a, b, decision }) {
  assert.equal(decision.event, 'node_accepted');
  assert.deepEqual(decision.arg, a.get_node_info());
  const bId = b.get_node_info().id;
  await Promise.all([
    a.events.next('added_node', 'a: added_node for b', byId(bId)),
    b.events.next('added_node', 'b: added_node for a', byId(a.get_node_info().id)),
  ]);
  assert.deepEqual(a.get_nodes(), [b.get_node_info()]);
  assert.deepEqual(b.get_nodes(), [a.get_node_info()]);
  assert.deepEqual(b.events.seen('node_rejected'), []);
}

// b was refused by a: b learnt nothing and nobody has it, even after a while.
async function assertRefused({ a, b, decision }) {
  assert.equal(decision.event, 'node_rejected');
  assert.deepEqual(decision.arg, judged(a.get_node_info()), 'node_rejected names the decider');
  await delay(500);
  const bId = b.get_node_info().id;
  assert.deepEqual(b.get_nodes(), [], "the rejected node's get_nodes()");
  assert.deepEqual(b.events.seen('added_node'), [], 'the rejected node added nobody');
  assert.deepEqual(b.events.seen('node_accepted'), [], 'the rejected node was accepted by nobody');
  assert.deepEqual(a.get_nodes(), [], "the decider's get_nodes()");
  assert.deepEqual(a.events.seen('added_node', byId(bId)), [], 'the decider never added it');
}

// a's filter failed on b: refused as before, but a reported it, an ERR_ESPIAL_FILTER error
// naming b (id and address) and `reason`, with err.node = b's object and err.cause = what
// was thrown (`cause`, if given), and counted it in stats().filter_errors.
async function assertFilterFailure(result, { reason, cause }) {
  const { a, b } = result;
  await assertRefused(result);
  const bInfo = b.get_node_info();
  const isFilterError = (err) => err.code === 'ERR_ESPIAL_FILTER';
  const { arg: err } = await a.events.next('error', 'a: ERR_ESPIAL_FILTER', isFilterError);
  assert.ok(err instanceof Error);
  assert.deepEqual(err.node, judged(bInfo), 'err.node is the node judged');
  assert.ok(err.message.includes(bInfo.id), `the message names the node's id: ${err.message}`);
  assert.ok(err.message.includes('127.0.0.1'), `the message names the node's address: ${err.message}`);
  assert.match(err.message, reason);
  if (cause !== undefined) assert.equal(err.cause, cause, 'err.cause is what was thrown');
  assert.ok(a.stats().filter_errors >= 1, `filter_errors: ${a.stats().filter_errors}`);
  return err;
}

test("the README's filter accepts a host in org.internal; both sides are asked", async () => {
  await withNodes(async (scope) => {
    const asked = [];
    const result = await admission(scope, {
      filter: readmeFilter,
      newcomerHost: 'x.org.internal',
      newcomerFilter: (data, cb) => {
        asked.push(data);
        cb(true);
      },
    });
    await assertAdmitted(result);
    const { a, b, calls } = result;
    // The member was asked about the newcomer, with the address seen on its socket.
    assert.ok(calls.length >= 1);
    const { data } = calls[0];
    // What the filter judges: the introduction and the socket's address, never metadata.
    assert.deepEqual(data, { ...judged(b.get_node_info()), host: 'x.org.internal' });
    assert.ok(!('metadata' in data), 'the filter sees no metadata');
    assert.equal(data.ip, '127.0.0.1');
    // Admission is mutual: the newcomer was asked about the member.
    assert.ok(asked.some((d) => d.id === a.get_node_info().id && d.host === 'a.org.internal'));
  });
});

test("the README's address filter decides on the socket's address, whatever the host name claims", async () => {
  await withNodes(async (scope) => {
    // Word for word, with its network: 127.0.0.1 is not in 10.1.0.0/16.
    const ipFilter = (data) => data.ip.startsWith('10.1.');
    const refused = await admission(scope, { filter: ipFilter, newcomerHost: 'x.org.internal' });
    await assertRefused(refused);
    assert.equal(refused.calls[0].data.ip, '127.0.0.1');
    // The same check on the loopback network admits it.
    const admitted = await admission(scope, {
      filter: (data) => data.ip.startsWith('127.'),
      newcomerHost: 'anything.example',
    });
    await assertAdmitted(admitted);
  });
});

test("the README's filter rejects evil.example: it learns no members and is in nobody's get_nodes()", async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portC, portB] = randomPorts(3);
    const a = scope.node(manualOptions({ port: portA, cluster, hostName: 'a.org.internal' }), 'a');
    a.connection_filter(readmeFilter);
    await a.events.next('listening', 'a: listening');
    const seed = [`127.0.0.1:${portA}`];
    const c = scope.node(manualOptions({ port: portC, cluster, hostName: 'c.org.internal', peers: seed }), 'c');
    c.connection_filter(readmeFilter);
    const aId = a.get_node_info().id;
    const cId = c.get_node_info().id;
    await Promise.all([
      a.events.next('added_node', 'a: added_node for c', byId(cId)),
      c.events.next('added_node', 'c: added_node for a', byId(aId)),
    ]);

    const b = scope.node(manualOptions({ port: portB, cluster, hostName: 'evil.example', peers: seed }), 'b');
    const { arg: decider } = await b.events.next('node_rejected', 'b: node_rejected', byId(aId));
    assert.deepEqual(decider, judged(a.get_node_info()));
    await delay(1000);

    const bId = b.get_node_info().id;
    assert.deepEqual(b.get_nodes(), []);
    assert.deepEqual(b.events.seen('added_node'), []);
    assert.deepEqual(b.events.seen('node_accepted'), []);
    for (const member of [a, c]) {
      assert.deepEqual(member.events.seen('added_node', byId(bId)), [], `${member.name} never added b`);
    }
    assert.deepEqual(ids(a.get_nodes()), [cId]);
    assert.deepEqual(ids(c.get_nodes()), [aId]);
  });
});

test('a filter that throws rejects, without crashing the member', async () => {
  await withNodes(async (scope) => {
    const bug = new Error('a bug in the filter');
    const result = await admission(scope, {
      newcomerHost: 'x.org.internal',
      failing: true,
      filter: () => {
        throw bug;
      },
    });
    assert.ok(result.calls.length >= 1, 'the filter was called');
    await assertRefused(result);
    await assertFilterFailure(result, { reason: /threw Error: a bug in the filter/, cause: bug });
  });
});

test('a filter that does not answer within connection_filter_timeout rejects', async (t) => {
  await withNodes(async (scope) => {
    const late = [];
    const result = await admission(scope, {
      newcomerHost: 'x.org.internal',
      memberOptions: { connection_filter_timeout: 300 },
      failing: true,
      filter: (data, cb) => {
        late.push(cb); // never answers in time
      },
    });
    const waited = result.decision.at - result.calls[0].at;
    t.diagnostic(`refused ${Math.round(waited)} ms after the filter was asked`);
    assert.ok(waited >= 250, `rejected ${Math.round(waited)} ms after the filter was asked; expected about 300`);
    // An answer after the timeout changes nothing.
    for (const cb of late) cb(true);
    await assertRefused(result);
    const err = await assertFilterFailure(result, { reason: /did not answer within 300 ms/ });
    assert.equal(err.cause, undefined, 'a timeout has no cause');
  });
});

test('a filter may answer by returning a boolean', async () => {
  await withNodes(async (scope) => {
    const filter = (data) => data.host_name === 'good.test';
    await assertAdmitted(await admission(scope, { filter, newcomerHost: 'good.test' }));
  });
  await withNodes(async (scope) => {
    const filter = (data) => data.host_name === 'good.test';
    await assertRefused(await admission(scope, { filter, newcomerHost: 'bad.test' }));
  });
});

test('a filter may answer by returning a Promise', async () => {
  const filter = async (data) => {
    await delay(50);
    return data.host.endsWith('.org.internal');
  };
  await withNodes(async (scope) => {
    await assertAdmitted(await admission(scope, { filter, newcomerHost: 'x.org.internal' }));
  });
  await withNodes(async (scope) => {
    await assertRefused(await admission(scope, { filter, newcomerHost: 'evil.example' }));
  });
  // A rejected Promise refuses.
  await withNodes(async (scope) => {
    const lookup = new Error('lookup failed');
    const failing = async () => {
      await delay(10);
      throw lookup;
    };
    const result = await admission(scope, { filter: failing, newcomerHost: 'x.org.internal', failing: true });
    await assertFilterFailure(result, { reason: /rejected with Error: lookup failed/, cause: lookup });
  });
});

// A typo in a filter used to mean that no cluster ever formed, without a word (issue 16).
test('a filter with a typo (a TypeError) refuses and reports it with the node and the TypeError', async () => {
  await withNodes(async (scope) => {
    let thrown;
    const result = await admission(scope, {
      newcomerHost: 'x.org.internal',
      failing: true,
      filter: (data, cb) => {
        try {
          return cb(data.hots.match(/org.internal$/g) != null);
        } catch (err) {
          thrown = err;
          throw err;
        }
      },
    });
    const err = await assertFilterFailure(result, { reason: /threw TypeError: .*match/ });
    assert.ok(err.cause instanceof TypeError);
    assert.equal(err.cause, thrown);
  });
});

test('a filter answering something that is not a boolean refuses and reports what it answered', async () => {
  const ways = [
    ['cb(\'yes\')', (data, cb) => cb('yes'), /answered string "yes", not true or false/],
    ['returning \'yes\'', () => 'yes', /answered string "yes", not true or false/],
    ['a Promise of \'yes\'', async () => 'yes', /answered string "yes", not true or false/],
    ['returning null', () => null, /answered null, not true or false/],
    ['cb(1)', (data, cb) => cb(1), /answered number 1, not true or false/],
  ];
  for (const [how, filter, reason] of ways) {
    await withNodes(async (scope) => {
      const result = await admission(scope, { filter, newcomerHost: 'x.org.internal', failing: true });
      await assertFilterFailure(result, { reason }).catch((err) => {
        err.message = `${how}: ${err.message}`;
        throw err;
      });
    });
  }
});

test('returning undefined or a Promise of undefined and answering with cb later stays valid', async () => {
  await withNodes(async (scope) => {
    const filter = (data, cb) => {
      setTimeout(() => cb(true), 20);
    };
    await assertAdmitted(await admission(scope, { filter, newcomerHost: 'x.org.internal' }));
  });
  await withNodes(async (scope) => {
    const filter = async (data, cb) => {
      await delay(20);
      cb(true);
    };
    const result = await admission(scope, { filter, newcomerHost: 'x.org.internal' });
    await assertAdmitted(result);
    assert.equal(result.a.stats().filter_errors, 0);
  });
});

test('a failing filter without an error listener refuses, warns once and keeps the process up', async () => {
  // Not withNodes' nodes: those listen for `error`. An `error` event without a listener would
  // throw and end this process.
  const espial = require('..');
  const cluster = uniqueCluster();
  const [portA, portB] = randomPorts(2);
  const a = espial(manualOptions({ port: portA, cluster, hostName: 'a.org.internal' }));
  a.connection_filter(() => {
    throw new Error('no listener for this');
  });
  const warnings = [];
  const onWarning = (warning) => {
    if (warning.code === 'ERR_ESPIAL_FILTER') warnings.push(warning);
  };
  process.on('warning', onWarning);
  let b;
  try {
    await new Promise((resolve) => a.once('listening', resolve));
    b = espial(manualOptions({ port: portB, cluster, hostName: 'x.org.internal', peers: [`127.0.0.1:${portA}`] }));
    const aId = a.get_node_info().id;
    const rejected = new Promise((resolve) => b.on('node_rejected', (node) => node.id === aId && resolve()));
    await within(10_000, rejected, () => 'b: no node_rejected from a within 10 s');
    await within(5_000, (async () => {
      while (warnings.length === 0) await delay(20);
    })(), () => 'no ERR_ESPIAL_FILTER warning within 5 s');
    assert.equal(a.listenerCount('error'), 0);
    assert.match(warnings[0].message, new RegExp(b.get_node_info().id));
    assert.match(warnings[0].message, /threw Error: no listener for this/);
    assert.ok(a.stats().filter_errors >= 1);
    assert.deepEqual(a.get_nodes(), []);
  } finally {
    process.off('warning', onWarning);
    await Promise.all([a.exit(), b?.exit()]);
  }
  assert.equal(warnings.length, 1, 'one warning per node, not one per failure');
});
