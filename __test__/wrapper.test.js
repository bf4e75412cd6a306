'use strict';

// index.js against a stand-in for the addon: what the wrapper itself promises (when the node
// starts, how the filter's answers reach the addon, metadata checks, the node table), without
// any socket. The real addon is exercised by the other test files.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const Module = require('node:module');

// Records what index.js asks of the addon, and lets a test deliver event batches.
class FakeNative {
  static last;

  constructor(options, onEvents) {
    this.options = options;
    this.onEvents = onEvents;
    this.calls = [];
    this.metadata = options.metadata;
    this.filter = undefined;
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

  deliver(...events) {
    this.onEvents(events);
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
  fake.exports = { NativeNode: FakeNative };
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
  node.connection_filter(fn);
  return FakeNative.last.filter;
}

// What the addon would conclude from the filter's Promise: true, false or 'rejected'.
async function verdict(promise) {
  assert.ok(promise instanceof Promise, 'the filter given to the addon returns a Promise');
  try {
    return await promise;
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
    ['yes', false],
    [1, false],
    [undefined, false],
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
  assert.equal(await verdict(withFilter(boom)(nodeInfo('a'))), 'rejected');
  assert.equal(await verdict(withFilter(async () => boom())(nodeInfo('a'))), 'rejected');
  const badThenable = {
    get then() {
      throw new Error('bad then');
    },
  };
  assert.equal(await verdict(withFilter(() => badThenable)(nodeInfo('a'))), 'rejected');
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
  FakeNative.last.deliver({ kind: 'node_rejected', node: nodeInfo('a', { hostName: 'gate.test' }) });
  await tick();
  assert.deepEqual(seen, [{ id: 'a', host_name: 'gate.test', ip: '127.0.0.2', port: 30002, metadata: {} }]);
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
