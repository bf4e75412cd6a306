'use strict';

// index.js against a stand-in for the addon: what the wrapper itself promises (when the node
// starts, how the filter's answers reach the addon, metadata checks, the node table), without
// any socket. The real addon is exercised by the other test files.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const Module = require('node:module');
const { packDeliveries, unpackBatch } = require('../lib/packed.js');

// Records what index.js asks of the addon, and lets a test deliver event batches.
class FakeNative {
  static last;

  constructor(options, onEvents) {
    this.options = options;
    this.onEvents = onEvents;
    this.calls = [];
    this.metadata = options.metadata;
    this.filter = undefined;
    this.sends = []; // { event, payload, binary, targets } of every message sent
    // The outcome of each message, as the addon has it: null when handed over, or the
    // failure ({ code, message }). A test may replace it; a throw makes sendBatch throw.
    this.sendResult = () => null;
    // While true, batches wait as if their connection were backlogged: sendBatch returns a
    // batch id, and release() delivers their `sent` events.
    this.backlogged = false;
    this.waiting = [];
    FakeNative.last = this;
  }

  info() {
    const { hostName, address, port } = this.options;
    return { id: 'self-id', hostName, ip: address, port, metadata: this.metadata };
  }

  start() {
    this.calls.push('start');
  }

  setFilter(filter) {
    this.calls.push(filter === null ? 'setFilter(null)' : 'setFilter');
    this.filter = filter;
  }

  setMetadata(json) {
    this.calls.push('setMetadata');
    this.metadata = json;
  }

  exit() {
    this.calls.push('exit');
    return Promise.resolve();
  }

  promote() {
    this.calls.push('promote');
  }

  join(event) {
    this.calls.push(`join(${event})`);
  }

  leave(event) {
    this.calls.push(`leave(${event})`);
  }

  // As the addon does: one call per tick's sends, packed as lib/packed.js packs them
  // (unpacked here by its reader, which copies each message's bytes, since the wrapper
  // reuses its buffers, and checks that the sizes cover the payload). Answers null when
  // every message went, else one entry per message; or, while backlogged, a batch id whose
  // outcome comes later as a `sent` event.
  sendBatch(names, targets, meta, payload) {
    const results = [];
    for (const { name, ids, binary, payload: bytes } of unpackBatch({ names, targets, meta, payload })) {
      const message = { event: name, payload: bytes, binary, targets: ids };
      this.calls.push('send');
      this.sends.push(message);
      results.push(this.sendResult(message));
    }
    const outcome = results.every((r) => r == null) ? null : results;
    if (!this.backlogged) return outcome;
    const batch = (this.batches = (this.batches ?? 0) + 1);
    this.waiting.push({ batch, outcome });
    return batch;
  }

  // The backlogged batches drained: their outcomes arrive, in one notification batch.
  release() {
    this.deliver(...this.waiting.splice(0).map(({ batch, outcome }) => ({ kind: 'sent', batch, failures: outcome })));
  }

  // Events as the addon delivers them; each run of `message` entries is packed into one
  // `messages` event, as the addon packs them (by lib/packed.js's writer).
  deliver(...events) {
    const out = [];
    for (const e of events) {
      if (e.kind !== 'message') {
        out.push(e);
        continue;
      }
      const last = out[out.length - 1];
      if (last && last.kind === 'messages') last.run.push(e);
      else out.push({ kind: 'messages', run: [e] });
    }
    const batch = out.map((e) => (e.kind === 'messages' ? { kind: 'messages', messages: packDeliveries(e.run) } : e));
    // As the addon does (src/binding/delivery.rs): a batch that is one run of messages and
    // nothing else comes as that run's parts.
    if (batch.length === 1 && batch[0].kind === 'messages') {
      const { strings, count, data } = batch[0].messages;
      this.onEvents(null, strings, count, data);
      return;
    }
    this.onEvents(batch);
  }
}

// index.js, loaded with FakeNative in place of binding.js.
function loadEspial() {
  const bindingPath = require.resolve('../binding.js');
  const indexPath = require.resolve('../index.js');
  const saved = require.cache[bindingPath];
  const fake = new Module(bindingPath, module);
  fake.filename = bindingPath;
  fake.loaded = true;
  // The rest of the addon (its list of error codes) is the real one.
  fake.exports = { ...require(bindingPath), NativeNode: FakeNative };
  require.cache[bindingPath] = fake;
  delete require.cache[indexPath];
  try {
    return require(indexPath);
  } finally {
    delete require.cache[indexPath];
    if (saved) require.cache[bindingPath] = saved;
    else delete require.cache[bindingPath];
  }
}

const espial = loadEspial();
const OPTIONS = { network: { port: 30001, address: { local: '127.0.0.1' }, host_name: 'self.test' } };
const tick = () => new Promise((resolve) => setImmediate(resolve));

function nodeInfo(id, { hostName = `${id}.org.internal`, metadata = '{}' } = {}) {
  return { id, hostName, ip: '127.0.0.2', port: 30002, metadata };
}

// A node with a filter, and the native side's view of that filter.
function withFilter(fn) {
  const node = espial(OPTIONS);
  // The failures these filters are made to have are reported to this listener (tested
  // below), rather than as process warnings.
  node.on('error', () => {});
  node.connection_filter(fn);
  return FakeNative.last.filter;
}

// What the addon would conclude from the filter's Promise: true or false (an answer),
// 'failed' (a string saying how the filter failed: refused, counted and logged) or
// 'rejected' (refused too).
async function verdict(promise) {
  assert.ok(promise instanceof Promise, 'the filter given to the addon returns a Promise');
  try {
    const value = await promise;
    if (typeof value === 'string') return 'failed';
    return value;
  } catch {
    return 'rejected';
  }
}

test('the node starts on the next tick, after code that follows the constructor', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  assert.deepEqual(native.calls, []);
  node.connection_filter(() => true);
  assert.deepEqual(native.calls, ['setFilter']);
  await tick();
  assert.deepEqual(native.calls, ['setFilter', 'start']);
  await node.exit();
  assert.deepEqual(native.calls, ['setFilter', 'start', 'exit']);
});

test('exit() before the start tick exits without ever starting the node', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const exiting = node.exit();
  await tick();
  await exiting;
  assert.deepEqual(native.calls, ['exit']);
});

test('connection_filter_timeout reaches the addon', () => {
  espial({ ...OPTIONS, connection_filter_timeout: 300 });
  assert.equal(FakeNative.last.options.connectionFilterTimeout, 300);
  espial(OPTIONS);
  assert.equal(FakeNative.last.options.connectionFilterTimeout, 5000);
});

test('connection_filter(null) removes the filter; anything but a function throws', () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  node.connection_filter(() => true);
  node.connection_filter(null);
  assert.deepEqual(native.calls, ['setFilter', 'setFilter(null)']);
  assert.equal(native.filter, null);
  for (const bad of [undefined, true, 'host', {}, Promise.resolve(true)]) {
    assert.throws(() => node.connection_filter(bad), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
      message: /connection_filter/,
    });
  }
  assert.deepEqual(native.calls, ['setFilter', 'setFilter(null)']);
});

test("the README's filter works as written", async () => {
  const filter = withFilter(function (data, fn) {
    return fn(data.host.match(/org.internal$/g) != null);
  });
  assert.equal(await verdict(filter(nodeInfo('a', { hostName: 'x.org.internal' }))), true);
  assert.equal(await verdict(filter(nodeInfo('b', { hostName: 'evil.example' }))), false);
});

test('the filter gets the public node object plus host, and the Espial as this', async () => {
  let seen;
  let self;
  const node = espial(OPTIONS);
  node.connection_filter(function (data, cb) {
    seen = data;
    self = this;
    cb(true);
  });
  const info = nodeInfo('a', { hostName: 'a.test', metadata: '{"role":"web"}' });
  assert.equal(await verdict(FakeNative.last.filter(info)), true);
  assert.deepEqual(seen, {
    id: 'a',
    host_name: 'a.test',
    host: 'a.test',
    ip: '127.0.0.2',
    port: 30002,
    metadata: { role: 'web' },
  });
  assert.equal(self, node);
});

test('cb(true) admits; cb(false) and cb with anything but true refuse', async () => {
  const answers = [
    [true, true],
    [false, false],
    // Anything but a boolean refuses as a failure of the filter, which is reported.
    ['yes', 'failed'],
    [1, 'failed'],
    [undefined, 'failed'],
  ];
  for (const [given, expected] of answers) {
    const filter = withFilter((data, cb) => cb(given));
    assert.equal(await verdict(filter(nodeInfo('a'))), expected, `cb(${String(given)})`);
  }
});

test('cb may answer later, after the filter has returned', async () => {
  const filter = withFilter((data, cb) => {
    setTimeout(() => cb(true), 20);
  });
  assert.equal(await verdict(filter(nodeInfo('a'))), true);
  // An async filter whose Promise resolves to undefined has not answered either.
  const asyncFilter = withFilter(async (data, cb) => {
    setTimeout(() => cb(true), 20);
  });
  assert.equal(await verdict(asyncFilter(nodeInfo('a'))), true);
});

test('returning a boolean answers', async () => {
  assert.equal(await verdict(withFilter(() => true)(nodeInfo('a'))), true);
  assert.equal(await verdict(withFilter(() => false)(nodeInfo('a'))), false);
});

test('returning a Promise answers with what it resolves to', async () => {
  const later = (value) => new Promise((resolve) => setTimeout(resolve, 10, value));
  assert.equal(await verdict(withFilter(() => later(true))(nodeInfo('a'))), true);
  assert.equal(await verdict(withFilter(() => later(false))(nodeInfo('a'))), false);
  assert.equal(await verdict(withFilter(async (data) => data.host.endsWith('.org.internal'))(nodeInfo('a'))), true);
  // A thenable that is not a Promise counts too.
  const thenable = { then: (resolve) => resolve(true) };
  assert.equal(await verdict(withFilter(() => thenable)(nodeInfo('a'))), true);
});

test('a filter that throws, or whose Promise rejects, rejects', async () => {
  const boom = () => {
    throw new Error('filter bug');
  };
  // Refused as a failure of the filter, which is reported (ERR_ESPIAL_FILTER).
  assert.equal(await verdict(withFilter(boom)(nodeInfo('a'))), 'failed');
  assert.equal(await verdict(withFilter(async () => boom())(nodeInfo('a'))), 'failed');
  const badThenable = {
    get then() {
      throw new Error('bad then');
    },
  };
  assert.equal(await verdict(withFilter(() => badThenable)(nodeInfo('a'))), 'failed');
});

test('a failing filter tells an error listener: ERR_ESPIAL_FILTER with the node and the cause', async () => {
  const node = espial(OPTIONS);
  const errors = [];
  node.on('error', (err) => errors.push(err));
  const bug = new TypeError("Cannot read properties of undefined (reading 'match')");
  node.connection_filter(() => {
    throw bug;
  });
  const reason = await FakeNative.last.filter(nodeInfo('a', { metadata: null }));
  assert.equal(reason, "it threw TypeError: Cannot read properties of undefined (reading 'match')");
  assert.equal(errors.length, 1);
  const [err] = errors;
  assert.equal(err.code, 'ERR_ESPIAL_FILTER');
  assert.equal(err.cause, bug);
  assert.deepEqual(err.node, { id: 'a', host_name: 'a.org.internal', ip: '127.0.0.2', port: 30002 });
  assert.equal(
    err.message,
    "espial: connection filter failed on node a (127.0.0.2:30002): it threw TypeError: Cannot read properties of undefined (reading 'match'); the node was refused",
  );
  // An answer that is not a boolean has no cause; an answer after the filter failed is ignored.
  node.connection_filter((data, cb) => {
    cb('yes');
    cb(true);
  });
  assert.equal(await FakeNative.last.filter(nodeInfo('b')), 'it answered string "yes", not true or false');
  assert.equal(errors.length, 2);
  assert.equal(errors[1].cause, undefined);
  assert.equal(errors[1].node.id, 'b');
});

test('the first answer wins', async () => {
  const cbFirst = withFilter((data, cb) => {
    cb(false);
    return true;
  });
  assert.equal(await verdict(cbFirst(nodeInfo('a'))), false);
  const returnFirst = withFilter((data, cb) => {
    setTimeout(() => cb(false), 10);
    return true;
  });
  assert.equal(await verdict(returnFirst(nodeInfo('a'))), true);
  const cbThenThrow = withFilter((data, cb) => {
    cb(true);
    throw new Error('after answering');
  });
  assert.equal(await verdict(cbThenThrow(nodeInfo('a'))), true);
});

test('a filter that never answers leaves the Promise pending (the addon times it out)', async () => {
  const filter = withFilter(() => undefined);
  const pending = new Promise((resolve) => setTimeout(resolve, 50, 'pending'));
  const outcome = await Promise.race([verdict(filter(nodeInfo('a'))), pending]);
  assert.equal(outcome, 'pending');
});

test('set_metadata() checks its argument, sends the JSON and updates get_node_info()', () => {
  const node = espial({ ...OPTIONS, metadata: { v: 1 } });
  const native = FakeNative.last;
  assert.deepEqual(node.get_node_info().metadata, { v: 1 });
  node.set_metadata({ v: 2, tags: ['a'] });
  assert.deepEqual(native.calls, ['setMetadata']);
  assert.equal(native.metadata, '{"v":2,"tags":["a"]}');
  assert.deepEqual(node.get_node_info().metadata, { v: 2, tags: ['a'] });

  for (const bad of [{ blob: 'x'.repeat(64 * 1024) }, 'v=3', { at: new Date() }]) {
    assert.throws(() => node.set_metadata(bad), (err) => {
      assert.ok(err instanceof TypeError);
      assert.match(err.message, /"metadata(\.at)?"/);
      return true;
    });
  }
  assert.deepEqual(native.calls, ['setMetadata'], 'nothing invalid reached the addon');
  assert.deepEqual(node.get_node_info().metadata, { v: 2, tags: ['a'] });
});

test('updated_node replaces the entry before it is emitted', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  native.deliver({ kind: 'added_node', node: nodeInfo('a', { metadata: '{"v":1}' }) });
  await tick();
  const seen = [];
  node.on('updated_node', (other) => seen.push({ other, nodes: node.get_nodes() }));
  native.deliver({ kind: 'updated_node', node: nodeInfo('a', { metadata: '{"v":2}' }) });
  await tick();
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0].other.metadata, { v: 2 });
  assert.deepEqual(seen[0].nodes.map((n) => n.metadata), [{ v: 2 }]);
  // An update about a node never added cannot put it into get_nodes().
  native.deliver({ kind: 'updated_node', node: nodeInfo('stranger') });
  await tick();
  assert.equal(seen.length, 1);
  assert.deepEqual(node.get_nodes().map((n) => n.id), ['a']);
  await node.exit();
});

test('node_rejected hands out the decider as a public node object', async () => {
  const node = espial(OPTIONS);
  const seen = [];
  node.on('node_rejected', (decider) => seen.push(decider));
  // The addon hands it over without metadata: that crosses only after admission.
  FakeNative.last.deliver({ kind: 'node_rejected', node: nodeInfo('a', { hostName: 'gate.test', metadata: null }) });
  await tick();
  assert.deepEqual(seen, [{ id: 'a', host_name: 'gate.test', ip: '127.0.0.2', port: 30002 }]);
  assert.deepEqual(node.get_nodes(), []);
  await node.exit();
});

test('after exit() get_nodes() is empty, and late news does not refill it', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  native.deliver({ kind: 'added_node', node: nodeInfo('a') }, { kind: 'added_node', node: nodeInfo('b') });
  await tick();
  assert.equal(node.get_nodes().length, 2);
  await node.exit();
  assert.deepEqual(node.get_nodes(), []);
  const late = [];
  node.on('added_node', (n) => late.push(n));
  native.deliver({ kind: 'added_node', node: nodeInfo('c') });
  await tick();
  assert.deepEqual(late, []);
  assert.deepEqual(node.get_nodes(), []);
});

// ---- master election: get_master() / is_master() follow the addon's events ----

const SELF = nodeInfo('self-id', { hostName: 'self.test' });

test('get_master() and is_master() follow new_master, and change before it is emitted', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  assert.equal(node.get_master(), undefined);
  assert.equal(node.is_master(), false);
  const seen = [];
  node.on('new_master', (master) => seen.push({ master, get: node.get_master(), is: node.is_master() }));

  native.deliver({ kind: 'added_node', node: nodeInfo('a', { metadata: '{"v":1}' }) });
  native.deliver({ kind: 'new_master', node: nodeInfo('a', { metadata: '{"v":1}' }) });
  await tick();
  const a = { id: 'a', host_name: 'a.org.internal', ip: '127.0.0.2', port: 30002, metadata: { v: 1 } };
  assert.deepEqual(seen, [{ master: a, get: a, is: false }]);
  assert.deepEqual(node.get_master(), a);
  assert.notEqual(node.get_master(), node.get_master(), 'a fresh object every call');

  // The master's new metadata shows in get_master() too.
  native.deliver({ kind: 'updated_node', node: nodeInfo('a', { metadata: '{"v":2}' }) });
  await tick();
  assert.deepEqual(node.get_master().metadata, { v: 2 });

  // This node as master: get_master() is its own object.
  native.deliver({ kind: 'new_master', node: { ...native.info() } });
  await tick();
  assert.equal(seen.length, 2);
  assert.deepEqual(seen[1].master, node.get_node_info());
  assert.deepEqual(seen[1].get, node.get_node_info());
  assert.equal(seen[1].is, true);
  assert.equal(node.is_master(), true);
  await node.exit();
});

test('a master not (yet) in get_nodes() is still get_master()', async () => {
  const node = espial(OPTIONS);
  FakeNative.last.deliver({ kind: 'new_master', node: nodeInfo('m') });
  await tick();
  assert.equal(node.get_master().id, 'm');
  assert.deepEqual(node.get_nodes(), []);
  await node.exit();
});

test('new_master without a node: no event, and get_master() is undefined', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const seen = [];
  node.on('new_master', (master) => seen.push(master));
  native.deliver({ kind: 'new_master', node: nodeInfo('a') });
  await tick();
  native.deliver({ kind: 'new_master' });
  await tick();
  assert.deepEqual(seen.map((n) => n.id), ['a']);
  assert.equal(node.get_master(), undefined);
  assert.equal(node.is_master(), false);
  await node.exit();
});

test('removed_node of the master clears get_master() before it is emitted', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  native.deliver(
    { kind: 'added_node', node: nodeInfo('a') },
    { kind: 'added_node', node: nodeInfo('b') },
    { kind: 'new_master', node: nodeInfo('a') },
  );
  await tick();
  const seen = [];
  node.on('removed_node', (gone) => seen.push({ gone: gone.id, master: node.get_master() }));
  native.deliver({ kind: 'removed_node', node: nodeInfo('b') });
  await tick();
  assert.deepEqual(seen, [{ gone: 'b', master: node.get_master() }]);
  assert.equal(node.get_master().id, 'a', 'removing another node keeps the master');
  native.deliver({ kind: 'removed_node', node: nodeInfo('a') });
  await tick();
  assert.deepEqual(seen[1], { gone: 'a', master: undefined });
  assert.equal(node.get_master(), undefined);
  await node.exit();
});

test('promotion and demotion hand out public objects, and agree with is_master()', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const seen = [];
  node.on('promotion', (arg) => seen.push({ event: 'promotion', arg, is: node.is_master() }));
  node.on('demotion', (arg) => seen.push({ event: 'demotion', arg, is: node.is_master() }));
  // Whichever order the addon puts them in within a batch, the state agrees in each listener.
  native.deliver({ kind: 'promotion' }, { kind: 'new_master', node: SELF });
  await tick();
  native.deliver({ kind: 'demotion', node: nodeInfo('b') }, { kind: 'new_master', node: nodeInfo('b') });
  await tick();
  native.deliver({ kind: 'new_master', node: SELF }, { kind: 'promotion', node: nodeInfo('b') });
  await tick();
  native.deliver({ kind: 'demotion' }, { kind: 'new_master' });
  await tick();
  const b = { id: 'b', host_name: 'b.org.internal', ip: '127.0.0.2', port: 30002, metadata: {} };
  assert.deepEqual(seen, [
    { event: 'promotion', arg: { previous_master: undefined }, is: true },
    { event: 'demotion', arg: b, is: false },
    { event: 'promotion', arg: { previous_master: b }, is: true },
    { event: 'demotion', arg: undefined, is: false },
  ]);
  assert.ok('previous_master' in seen[0].arg, 'promotion always carries previous_master');
  assert.equal(node.get_master(), undefined);
  await node.exit();
});

test('after exit() there is no master', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  native.deliver({ kind: 'new_master', node: SELF });
  await tick();
  assert.equal(node.is_master(), true);
  await node.exit();
  assert.equal(node.get_master(), undefined);
  assert.equal(node.is_master(), false);
  native.deliver({ kind: 'new_master', node: nodeInfo('late') });
  await tick();
  assert.equal(node.get_master(), undefined);
});

test('promote() reaches the addon, except on a node that is not master eligible', async () => {
  const node = espial(OPTIONS);
  node.promote();
  assert.deepEqual(FakeNative.last.calls, ['promote']);
  const ineligible = espial({ ...OPTIONS, master_eligible: false });
  assert.throws(() => ineligible.promote(), (err) => {
    assert.ok(err instanceof Error);
    assert.equal(err.code, 'ERR_ESPIAL_NOT_ELIGIBLE');
    assert.match(err.message, /master_eligible/);
    return true;
  });
  assert.deepEqual(FakeNative.last.calls, []);
  // The addon's own refusal comes through as it is.
  const other = espial(OPTIONS);
  const refusal = Object.assign(new Error('not eligible'), { code: 'ERR_ESPIAL_NOT_ELIGIBLE' });
  FakeNative.last.promote = () => {
    throw refusal;
  };
  assert.throws(() => other.promote(), (err) => err === refusal);
  await Promise.all([node.exit(), ineligible.exit(), other.exit()]);
});

test('master_quorum and max_message_size reach the addon', () => {
  espial({ ...OPTIONS, master_quorum: 2, max_message_size: 4096 });
  assert.equal(FakeNative.last.options.masterQuorum, 2);
  assert.equal(FakeNative.last.options.maxMessageSize, 4096);
  espial(OPTIONS);
  assert.equal(FakeNative.last.options.masterQuorum, 0);
  assert.equal(FakeNative.last.options.maxMessageSize, 16 * 1024 * 1024);
});

// ---- custom events ----

const { RESERVED_EVENTS: RESERVED } = require('./support.js');

test("espial's own event names cannot be joined, left or sent", () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  for (const name of RESERVED) {
    const reserved = (err) => {
      assert.ok(err instanceof Error);
      assert.ok(!(err instanceof TypeError), 'a reserved name is not a type error');
      assert.equal(err.code, 'ERR_ESPIAL_RESERVED_EVENT');
      assert.ok(err.message.includes(`"${name}"`), err.message);
      return true;
    };
    assert.throws(() => node.join(name), reserved);
    assert.throws(() => node.leave(name), reserved);
    assert.throws(() => node.send(name, {}), reserved);
    assert.throws(() => node.send(name, {}, () => assert.fail('no callback for a synchronous error')), reserved);
  }
  assert.deepEqual(native.calls, [], 'nothing reached the addon');
});

test('event names are strings of 1 to 255 bytes', () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  for (const method of ['join', 'leave', 'send']) {
    for (const [bad, code] of [
      [undefined, 'ERR_INVALID_ARG_TYPE'],
      [42, 'ERR_INVALID_ARG_TYPE'],
      [Symbol('job'), 'ERR_INVALID_ARG_TYPE'],
      ['', 'ERR_INVALID_ARG_VALUE'],
      ['x'.repeat(256), 'ERR_INVALID_ARG_VALUE'],
      ['é'.repeat(128), 'ERR_INVALID_ARG_VALUE'],
    ]) {
      assert.throws(() => node[method](bad, 1), { name: 'TypeError', code, message: new RegExp(`${method}\\(\\)`) });
    }
  }
  assert.deepEqual(native.calls, []);
  node.join('x'.repeat(255));
  node.join('é'.repeat(127));
  assert.deepEqual(native.calls, [`join(${'x'.repeat(255)})`, `join(${'é'.repeat(127)})`]);
});

test('join() and leave() reach the addon once per change', () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  node.join('job');
  node.join('job');
  node.leave('job');
  node.leave('job');
  node.leave('never-joined');
  node.join('job');
  assert.deepEqual(native.calls, ['join(job)', 'leave(job)', 'join(job)']);
});

test('targets: omitted or null is everyone; node objects and ids become ids, each once', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const a = { id: 'a', host_name: 'a.test', ip: '127.0.0.2', port: 1, metadata: {} };
  await node.send('job', 1);
  await node.send('job', 1, undefined);
  await node.send('job', 1, null);
  await node.send('job', 1, a);
  await node.send('job', 1, 'b');
  await node.send('job', 1, [a, 'b']);
  await node.send('job', 1, ['b', a, 'a', { id: 'b' }]);
  await node.send('job', 1, []);
  assert.deepEqual(
    native.sends.map((s) => s.targets),
    [null, null, null, ['a'], ['b'], ['a', 'b'], ['b', 'a'], []],
  );
  for (const [bad, name] of [
    [42, 'targets'],
    [true, 'targets'],
    ['', 'targets'],
    [{}, 'targets'],
    [{ id: 7 }, 'targets'],
    [Buffer.from('a'), 'targets'],
    [[a, 42], 'targets[1]'],
    [[null], 'targets[0]'],
    [['a', ''], 'targets[1]'],
  ]) {
    assert.throws(() => node.send('job', 1, bad), (err) => {
      assert.ok(err instanceof TypeError, `${describeValue(bad)}: ${err}`);
      assert.match(err.code, /^ERR_INVALID_ARG_(TYPE|VALUE)$/);
      assert.ok(err.message.includes(`send(): ${name} must be`), err.message);
      return true;
    });
  }
  assert.equal(native.sends.length, 8, 'nothing invalid reached the addon');
});

function describeValue(value) {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

test('data: JSON values go as JSON text, Buffers and Uint8Arrays as their bytes', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const values = [{ a: 1, b: [true, null] }, [1, 'two'], 'text', 42, 1.5, true, false, null, ''];
  for (const value of values) await node.send('job', value);
  assert.deepEqual(
    native.sends.map(({ payload, binary }) => ({ text: payload.toString('utf8'), binary })),
    values.map((value) => ({ text: JSON.stringify(value), binary: false })),
  );
  assert.ok(native.sends.every(({ payload }) => Buffer.isBuffer(payload)));

  native.sends.length = 0;
  const buffer = Buffer.from([0, 1, 2, 255]);
  const bytes = new Uint8Array([9, 8, 7, 6, 5]).subarray(1, 4);
  await node.send('job', buffer);
  await node.send('job', bytes);
  await node.send('job', Buffer.alloc(0));
  const [first, second, third] = native.sends;
  assert.equal(first.binary, true);
  assert.deepEqual([...first.payload], [0, 1, 2, 255], 'a Buffer: its bytes');
  assert.equal(second.binary, true);
  assert.ok(Buffer.isBuffer(second.payload));
  assert.deepEqual([...second.payload], [8, 7, 6], 'a Uint8Array view: exactly its bytes');
  assert.equal(third.binary, true);
  assert.equal(third.payload.length, 0);
  // toJSON is honoured, as JSON.stringify does.
  await node.send('job', { at: new Date(0) });
  assert.equal(native.sends[3].payload.toString(), '{"at":"1970-01-01T00:00:00.000Z"}');
});

test('a Buffer is sent as it was when send() was called, whatever happens to it after', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const buffer = Buffer.from('before');
  const sent = node.send('job', buffer);
  buffer.write('after!');
  await sent;
  assert.equal(native.sends[0].payload.toString(), 'before');
});

test('data JSON cannot carry throws a TypeError naming data', () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const cycle = {};
  cycle.self = cycle;
  for (const bad of [undefined, () => 1, Symbol('s'), 1n, cycle, { big: 2n }, new Uint16Array(2), new ArrayBuffer(4)]) {
    assert.throws(() => node.send('job', bad), (err) => {
      assert.ok(err instanceof TypeError, String(err));
      assert.match(err.code, /^ERR_INVALID_ARG_(TYPE|VALUE)$/);
      assert.match(err.message, /send\(\): data/);
      return true;
    });
  }
  assert.throws(() => node.send('job'), { name: 'TypeError', message: /data/ });
  assert.deepEqual(native.calls, []);
});

test('a message over max_message_size is refused, by the Promise and the callback, and not sent', async () => {
  const node = espial({ ...OPTIONS, max_message_size: 10 });
  const native = FakeNative.last;
  await node.send('job', Buffer.alloc(10));
  await node.send('job', 'x'.repeat(8)); // "xxxxxxxx" with its quotes: 10 bytes
  const tooLarge = (err) => {
    assert.ok(err instanceof Error);
    assert.equal(err.code, 'ERR_ESPIAL_MESSAGE_TOO_LARGE');
    assert.match(err.message, /11 bytes/);
    assert.match(err.message, /max_message_size \(10 bytes\)/);
    return true;
  };
  await assert.rejects(node.send('job', Buffer.alloc(11)), tooLarge);
  await assert.rejects(node.send('job', 'x'.repeat(9)), tooLarge);
  const err = await new Promise((resolve) => node.send('job', Buffer.alloc(11), resolve));
  tooLarge(err);
  assert.equal(native.sends.length, 2);
});

test('a batch settles when the addon hands it over, but never before an earlier one', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const order = [];
  await node.send('job', 1).then(() => order.push('at once'));
  // This batch waits (its connection is backlogged); the ones sent meanwhile are handed
  // over, or refused, or make the addon throw, at once, but settle only after it.
  native.backlogged = true;
  const first = node.send('job', 2).then(() => order.push('first'));
  await tick();
  native.backlogged = false;
  const second = node.send('job', 3).then(() => order.push('second'));
  await tick();
  native.sendResult = () => ({ code: 'ERR_ESPIAL_UNKNOWN_TARGET', message: 'no member zz' });
  const third = node.send('job', 4, 'zz').catch((err) => order.push(err.code));
  await tick();
  const boom = new Error('the addon threw');
  native.sendResult = () => {
    throw boom;
  };
  const fourth = node.send('job', 5).catch((err) => order.push(err === boom ? 'threw' : err));
  await tick();
  native.sendResult = () => null;
  assert.deepEqual(order, ['at once']);
  native.release();
  await Promise.all([first, second, third, fourth]);
  assert.deepEqual(order, ['at once', 'first', 'second', 'ERR_ESPIAL_UNKNOWN_TARGET', 'threw']);
  // Nothing waits any more: settled at once again.
  await node.send('job', 6);
  assert.deepEqual(native.sends.map((m) => m.payload.toString()), ['1', '2', '3', '4', '5', '6']);
});

test('send() settles its Promise and calls back, with or without targets', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const order = [];
  const withTargets = node.send('job', 1, 'a', (err) => order.push(['targets cb', err]));
  const withoutTargets = node.send('job', 2, (err) => order.push(['no targets cb', err]));
  const withUndefined = node.send('job', 3, undefined, (err) => order.push(['undefined cb', err]));
  assert.ok(withTargets instanceof Promise);
  assert.equal(await withTargets, undefined);
  await withoutTargets;
  await withUndefined;
  await tick();
  assert.deepEqual(order, [
    ['targets cb', null],
    ['no targets cb', null],
    ['undefined cb', null],
  ]);
  assert.deepEqual(native.sends.map((s) => s.targets), [['a'], null, null]);

  // The addon's failure becomes an Error with its code and message, for both forms.
  native.sendResult = () => ({
    code: 'ERR_ESPIAL_UNKNOWN_TARGET',
    message: 'espial: send(): target zz is not a member of the cluster',
  });
  const failed = (err) => {
    assert.ok(err instanceof Error);
    assert.equal(err.code, 'ERR_ESPIAL_UNKNOWN_TARGET');
    assert.equal(err.message, 'espial: send(): target zz is not a member of the cluster');
    return true;
  };
  await assert.rejects(node.send('job', 1, 'zz'), failed);
  failed(await new Promise((resolve) => node.send('job', 1, 'zz', resolve)));

  // A failure reported later, in the batch's `sent` event (it waited for a backlogged
  // connection), reaches both too, with its code and message.
  const unknown = Object.assign(new Error('espial: send("job"): no member "zz"'), { code: 'ERR_ESPIAL_UNKNOWN_TARGET' });
  native.sendResult = () => ({ code: unknown.code, message: unknown.message });
  native.backlogged = true;
  let called;
  const rejected = node.send('job', 1, 'zz', (err) => (called = err));
  await tick();
  native.backlogged = false;
  native.release();
  const same = (err) => err.code === unknown.code && err.message === unknown.message;
  await assert.rejects(rejected, same);
  await tick();
  assert.ok(same(called));
  // A synchronous throw from the addon is a rejection too.
  native.sendResult = () => {
    throw unknown;
  };
  await assert.rejects(node.send('job', 1, 'zz'), (err) => err === unknown);
  // The callback alone is enough: no unhandled rejection (the test would fail with one).
  const cbErr = await new Promise((resolve) => node.send('job', 1, 'zz', resolve));
  assert.equal(cbErr, unknown);
  assert.throws(() => node.send('job', 1, 'a', 'not a function'), {
    name: 'TypeError',
    code: 'ERR_INVALID_ARG_TYPE',
    message: /callback/,
  });
});

test('messages of joined events are emitted as (data, from); others are not', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  native.deliver({ kind: 'added_node', node: nodeInfo('a', { hostName: 'a.test', metadata: '{"r":1}' }) });
  await tick();
  const seen = [];
  for (const event of ['job', 'other']) node.on(event, (data, from) => seen.push({ event, data, from }));
  const message = (event, payload, binary = false, from = 'a') => ({
    kind: 'message',
    event,
    from,
    payload: Buffer.from(payload),
    binary,
  });
  node.join('job');
  native.deliver(
    message('job', '{"n":1}'),
    message('other', '"not joined"'),
    message('job', [1, 2, 3], true),
    message('job', 'null'),
    message('job', '"from a stranger"', false, 'zz'),
  );
  await tick();
  const a = { id: 'a', host_name: 'a.test', ip: '127.0.0.2', port: 30002, metadata: { r: 1 } };
  assert.deepEqual(seen, [
    { event: 'job', data: { n: 1 }, from: a },
    { event: 'job', data: Buffer.from([1, 2, 3]), from: a },
    { event: 'job', data: null, from: a },
    { event: 'job', data: 'from a stranger', from: { id: 'zz' } },
  ]);
  assert.ok(Buffer.isBuffer(seen[1].data));

  // After leave() nothing more, even what was already on its way.
  node.leave('job');
  native.deliver(message('job', '{"n":2}'));
  await tick();
  assert.equal(seen.length, 4);
  await node.exit();
  node.join('job');
  native.deliver(message('job', '{"n":3}'));
  await tick();
  assert.equal(seen.length, 4, 'nothing is emitted after exit()');
});

test('a message that is not JSON is an error event, not a crash', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  node.join('job');
  const errors = [];
  node.on('error', (err) => errors.push(err));
  node.on('job', () => assert.fail('nothing valid arrived'));
  native.deliver({ kind: 'message', event: 'job', from: 'a', payload: Buffer.from('{oops'), binary: false });
  await tick();
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'ERR_ESPIAL_INVALID_PAYLOAD');
  assert.match(errors[0].message, /"job"/);
  await node.exit();
});

test('without an error listener, a message that is not JSON is dropped: no error event, no crash', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  node.join('job');
  const seen = [];
  node.on('job', (data) => seen.push(data));
  // Emitting `error` here would throw: the dispatch would rethrow it and end the process.
  native.deliver(
    { kind: 'message', event: 'job', from: 'a', payload: Buffer.from('{oops'), binary: false },
    { kind: 'message', event: 'job', from: 'a', payload: Buffer.from('{"ok":1}'), binary: false },
  );
  await tick();
  assert.deepEqual(seen, [{ ok: 1 }]);
  await node.exit();
});

test('metadata that is not a JSON object gives a node metadata {}, never an exception', async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const asked = [];
  node.connection_filter((data) => {
    asked.push(data.metadata);
    return true;
  });
  assert.equal(await native.filter(nodeInfo('f', { metadata: 'not json' })), true);
  const seen = [];
  for (const event of ['added_node', 'updated_node', 'removed_node', 'node_accepted']) {
    node.on(event, (n) => seen.push([event, n.metadata]));
  }
  native.deliver(
    { kind: 'added_node', node: nodeInfo('a', { metadata: '{' }) },
    { kind: 'updated_node', node: nodeInfo('a', { metadata: '[1]' }) },
    { kind: 'node_accepted', node: nodeInfo('a', { metadata: '"str"' }) },
    { kind: 'removed_node', node: nodeInfo('a', { metadata: 'null' }) },
  );
  await tick();
  assert.deepEqual(asked, [{}]);
  assert.deepEqual(seen, [
    ['added_node', {}],
    ['updated_node', {}],
    ['node_accepted', {}],
    ['removed_node', {}],
  ]);
  await node.exit();
});

test('a listener that throws loses no later event of the batch; its error is rethrown on a later tick', () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const boom = new Error('listener bug');
  node.on('added_node', (n) => {
    if (n.id === 'a') throw boom;
  });
  node.join('job');
  const seen = [];
  node.on('job', (data) => {
    if (data === 1) throw boom;
    seen.push(data);
  });
  // Catch what index.js hands to process.nextTick to rethrow, instead of crashing the test.
  const rethrown = [];
  const nextTick = process.nextTick;
  process.nextTick = (fn, ...args) => (args[0] === boom ? rethrown.push(() => fn(...args)) : nextTick(fn, ...args));
  try {
    native.deliver(
      { kind: 'added_node', node: nodeInfo('a') },
      { kind: 'added_node', node: nodeInfo('b') },
      { kind: 'message', event: 'job', from: 'a', payload: Buffer.from('1'), binary: false },
      { kind: 'message', event: 'job', from: 'a', payload: Buffer.from('2'), binary: false },
    );
  } finally {
    process.nextTick = nextTick;
  }
  assert.deepEqual(node.get_nodes().map((n) => n.id).sort(), ['a', 'b']);
  assert.deepEqual(seen, [2]);
  assert.equal(rethrown.length, 2);
  for (const again of rethrown) assert.throws(again, (err) => err === boom);
});

test("a member's object is built once per change and shared: added_node, get_nodes() and each message's from", async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const added = [];
  const updated = [];
  const froms = [];
  node.on('added_node', (n) => added.push(n));
  node.on('updated_node', (n) => updated.push(n));
  node.on('job', (data, from) => froms.push(from));
  node.join('job');
  const message = (n) => ({ kind: 'message', event: 'job', from: 'a', payload: Buffer.from(String(n)), binary: false });
  native.deliver({ kind: 'added_node', node: nodeInfo('a', { metadata: '{"v":1}' }) }, message(1), message(2));
  await tick();
  assert.equal(froms.length, 2);
  assert.equal(froms[0], added[0], 'the added_node object is the from of its messages');
  assert.equal(froms[1], added[0], 'the same object for every message, not one per message');
  assert.equal(node.get_nodes()[0], added[0]);
  // A change of metadata: a new object, shared from then on; the old one is left as it was.
  native.deliver({ kind: 'updated_node', node: nodeInfo('a', { metadata: '{"v":2}' }) }, message(3));
  await tick();
  assert.notEqual(updated[0], added[0]);
  assert.deepEqual(added[0].metadata, { v: 1 });
  assert.deepEqual(updated[0].metadata, { v: 2 });
  assert.equal(froms[2], updated[0]);
  assert.equal(node.get_nodes()[0], updated[0]);
  // get_master() stays a fresh object every call, equal to the shared one.
  native.deliver({ kind: 'new_master', node: nodeInfo('a', { metadata: '{"v":2}' }) });
  await tick();
  assert.notEqual(node.get_master(), updated[0]);
  assert.deepEqual(node.get_master(), updated[0]);
  // Once removed, its messages (should any still come) carry only its id.
  native.deliver({ kind: 'removed_node', node: nodeInfo('a', { metadata: '{"v":2}' }) }, message(4));
  await tick();
  assert.deepEqual(froms[3], { id: 'a' });
  assert.deepEqual(node.get_nodes(), []);
  await node.exit();
});

test("the addon's error events and a batch left waiting at exit reach JS as espial errors", async () => {
  const node = espial(OPTIONS);
  const native = FakeNative.last;
  const errors = [];
  node.on('error', (err) => errors.push(err));
  native.deliver({ kind: 'error', code: 'ERR_ESPIAL_BIND', message: 'espial: cannot listen on 127.0.0.1:30001' });
  await tick();
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof Error);
  assert.equal(errors[0].code, 'ERR_ESPIAL_BIND');
  assert.equal(errors[0].message, 'espial: cannot listen on 127.0.0.1:30001');
  // A batch whose outcome never comes: exit() fails it, as not sent.
  native.backlogged = true;
  const waiting = node.send('job', 1);
  let called;
  node.send('job', 2, (err) => (called = err));
  await tick();
  await node.exit();
  const notRunning = { code: 'ERR_ESPIAL_NOT_RUNNING', message: 'espial: send(): the node is not running' };
  await assert.rejects(waiting, notRunning);
  await tick();
  assert.equal(called.code, notRunning.code);
  assert.equal(called.message, notRunning.message);
});

test('many batches in a row settle in order, some on the next turn of the event loop', async () => {
  const node = espial(OPTIONS);
  const order = [];
  const settled = [];
  let turns = 0;
  const turn = setInterval(() => turns++, 0);
  try {
    for (let i = 0; i < 1000; i++) {
      // One batch each: the microtasks between sends let each tick's batch be handed over.
      settled.push(node.send('job', i).then(() => order.push(i)));
      await null;
      await null;
    }
    await Promise.all(settled);
  } finally {
    clearInterval(turn);
  }
  assert.deepEqual(order, Array.from({ length: 1000 }, (_, i) => i));
  assert.ok(turns > 0, 'the event loop turned while 1000 batches settled');
  await node.exit();
});
