'use strict';

// Shared by the tests that start real nodes. Every node stays on loopback, and each test
// gets its own cluster name and multicast port so concurrent test files never meet.

const crypto = require('node:crypto');
const path = require('node:path');
const { EventEmitter } = require('node:events');
const { fork } = require('node:child_process');
const { performance } = require('node:perf_hooks');

const WAIT_MS = 10_000;

// Ports drawn from 20000-31999: few services use it, and it lies below Linux's range for
// outgoing connections' local ports (32768-60999 by default), so a port chosen here is not
// already taken by a connection's own end (an EADDRINUSE seen once at 40867). Distinct within
// one call.
function randomPorts(count) {
  const ports = new Set();
  while (ports.size < count) ports.add(20000 + crypto.randomInt(12000));
  return [...ports];
}

function uniqueCluster() {
  return `test-${crypto.randomBytes(6).toString('hex')}`;
}

// Options for one node of a test cluster on 127.0.0.1.
function loopbackOptions({ port, multicastPort, cluster, ...rest }) {
  return {
    network: {
      port,
      address: { local: '127.0.0.1' },
      multicast_interface: '127.0.0.1',
      multicast_port: multicastPort,
    },
    cluster,
    ...rest,
  };
}

// Resolves with the arguments of the first `event` for which `accept(...args)` is true.
// Rejects on an `error` event (unless that is what it waits for) or after `ms`, naming what
// it was waiting for.
function waitFor(emitter, event, what, accept = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      if (!accept(...args)) return;
      cleanup();
      resolve(args);
    };
    const onError = (err) => {
      cleanup();
      reject(new Error(`error while waiting for ${what}: ${err.message} (${err.code})`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    function cleanup() {
      clearTimeout(timer);
      emitter.off(event, onEvent);
      emitter.off('error', onError);
    }
    emitter.on(event, onEvent);
    if (event !== 'error') emitter.on('error', onError);
  });
}

// Options for one node that discovers without multicast: only through `peers` (seeds) and a
// scan of the /24 of each of `subnets`, which default to none, so nothing is scanned.
function manualOptions({ port, cluster, address = '127.0.0.1', hostName, peers = [], subnets = [], ...rest }) {
  const network = { port, address: { local: address }, multicast: false, peers, subnets };
  if (hostName !== undefined) network.host_name = hostName;
  return { network, cluster, ...rest };
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves with `promise`'s value, or rejects with `message()` after `ms`.
function within(ms, promise, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The membership and election events a node emits; child fixtures forward these.
const NODE_EVENTS = [
  'listening',
  'added_node',
  'updated_node',
  'removed_node',
  'node_accepted',
  'node_rejected',
  'new_master',
  'promotion',
  'demotion',
];
const EVENTS = [...NODE_EVENTS, 'error'];

// Records every event of `emitter` from now on, with the time it came, so that a wait
// started later still sees what already happened. An `error` event fails every wait.
class Recorder {
  // { event, arg, at } in order; `arg` is the event's argument (none for listening); custom
  // events (see track) also have `from`.
  log = [];
  #watchers = new Set();
  #emitter;
  #allowed = new Set(); // codes of `error` events a test expects (see allowErrors)

  constructor(emitter, name) {
    this.name = name;
    this.#emitter = emitter;
    for (const event of EVENTS) emitter.on(event, (arg) => this.#record({ event, arg, at: performance.now() }));
  }

  #record(entry) {
    this.log.push(entry);
    for (const watcher of [...this.#watchers]) watcher();
  }

  /** Records the custom event `event` from now on too, as { event, arg: data, from, at }. */
  track(event) {
    this.#emitter.on(event, (data, from) => this.#record({ event, arg: data, from, at: performance.now() }));
  }

  /**
   * `error` events with one of `codes` are expected from now on: they neither fail a wait
   * nor count as unexpected in assertNoErrors (they are still recorded, for `next`).
   */
  allowErrors(...codes) {
    for (const code of codes) this.#allowed.add(code);
  }

  #unexpected(err) {
    return !this.#allowed.has(err?.code);
  }

  /** The argument of every `event` so far for which `accept` holds. */
  seen(event, accept = () => true) {
    return this.log.filter((e) => e.event === event && accept(e.arg)).map((e) => e.arg);
  }

  /** The first `event` entry so far for which `accept` holds. */
  first(event, accept = () => true) {
    return this.log.find((e) => e.event === event && accept(e.arg));
  }

  /**
   * Resolves once `predicate()` holds; checked now and after every event. Rejects, naming
   * `what`, on an `error` event or after `ms`.
   */
  until(what, predicate, ms = WAIT_MS) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const error = this.first('error', (err) => this.#unexpected(err));
        if (error) {
          done();
          reject(new Error(`${this.name}: error while waiting for ${what}: ${error.arg.message} (${error.arg.code})`));
        } else if (predicate()) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        this.#watchers.delete(check);
      };
      this.#watchers.add(check);
      check();
    });
  }

  /** Resolves with the first `event` entry (past or future) for which `accept` holds. */
  async next(event, what, accept = () => true, ms = WAIT_MS) {
    await this.until(what, () => this.first(event, accept) !== undefined, ms);
    return this.first(event, accept);
  }

  /** Fails if any `error` event was recorded. */
  assertNoErrors() {
    const errors = this.seen('error', (err) => this.#unexpected(err)).map((err) => `${err.message} (${err.code})`);
    if (errors.length > 0) throw new Error(`${this.name}: unexpected error events: ${errors.join('; ')}`);
  }
}

const byId = (id) => (node) => node !== undefined && node.id === id;
const ids = (nodes) => nodes.map((node) => node.id).sort();

const MEMBER_CHILD = path.join(__dirname, 'fixtures', 'member-child.js');

// A node in a child process (fixtures/member-child.js), so that it can be killed with
// SIGKILL or block its own event loop. `events` records what it reports over IPC; its own
// object is known once this resolves. With `errorListener: false` the child listens for no
// `error` event, as a careless application would not.
async function startChild(options, name = 'child', { errorListener = true } = {}) {
  const args = [JSON.stringify(options), ...(errorListener ? [] : ['--no-error-listener'])];
  const proc = fork(MEMBER_CHILD, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let output = '';
  proc.stdout.setEncoding('utf8').on('data', (text) => (output += text));
  proc.stderr.setEncoding('utf8').on('data', (text) => (output += text));
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const relay = new EventEmitter();
  const events = new Recorder(relay, name);
  const replies = new Map();
  let nextRequest = 0;
  let gotInfo;
  const info = new Promise((resolve) => (gotInfo = resolve));
  proc.on('message', (msg) => {
    if (msg.type === 'info') {
      gotInfo(msg.node);
    } else if (msg.type === 'event') {
      let arg = msg.arg;
      if (msg.event === 'error') arg = Object.assign(new Error(arg.message), { code: arg.code });
      relay.emit(msg.event, arg);
    } else if (msg.type === 'reply') {
      replies.get(msg.id)?.(msg.data);
      replies.delete(msg.id);
    }
  });
  const running = () => proc.exitCode === null && proc.signalCode === null;
  const child = {
    name,
    proc,
    events,
    exited,
    output: () => output,
    /** Sends `{ type, ...data }` and resolves with the child's reply, within `ms`. */
    request(type, data = {}, ms = WAIT_MS) {
      const id = nextRequest++;
      const reply = new Promise((resolve) => replies.set(id, resolve));
      proc.send({ type, id, ...data });
      const message = () => `${name}: no reply to "${type}" within ${ms} ms; output: ${JSON.stringify(output)}`;
      return within(ms, reply, message);
    },
    /** SIGKILL, at once; resolves with the time it was sent, once the process has ended. */
    async kill() {
      const at = performance.now();
      proc.kill('SIGKILL');
      await within(WAIT_MS, exited, () => `${name}: still running ${WAIT_MS} ms after SIGKILL`);
      return at;
    },
    /** Ends the process however it is, for `finally`. */
    async stop() {
      if (running()) proc.kill('SIGKILL');
      await within(WAIT_MS, exited, () => `${name}: still running ${WAIT_MS} ms after SIGKILL`);
    },
  };
  try {
    const endedEarly = exited.then(() => {
      throw new Error(`${name} ended early; output: ${JSON.stringify(output)}`);
    });
    child.node = await within(
      WAIT_MS,
      Promise.race([info, endedEarly]),
      () => `${name}: no node info within ${WAIT_MS} ms; output: ${JSON.stringify(output)}`,
    );
  } catch (err) {
    await child.stop();
    throw err;
  }
  return child;
}

// Runs `body(scope)` where `scope.node(options)` starts an in-process node and
// `scope.child(options)` a child-process one; each has `.events`, a Recorder. Afterwards,
// whatever happened, every node is exited and every child process ended, each within
// WAIT_MS; if the body succeeded, no node may have reported an error.
async function withNodes(body) {
  // Loaded here, not at the top, so that fixtures using this file for its options helpers
  // do not load the addon twice.
  const espial = require('..');
  const nodes = [];
  const children = [];
  const scope = {
    node(options, name = `node ${nodes.length}`) {
      const node = espial(options);
      node.events = new Recorder(node, name);
      node.name = name;
      nodes.push(node);
      return node;
    },
    async child(options, name = `child ${children.length}`, extra = {}) {
      const child = await startChild(options, name, extra);
      children.push(child);
      return child;
    },
  };
  let failed = true;
  try {
    await body(scope);
    failed = false;
  } finally {
    const ending = await Promise.allSettled([
      ...nodes.map((node) => within(WAIT_MS, node.exit(), () => `${node.name}: exit() took over ${WAIT_MS} ms`)),
      ...children.map((child) => child.stop()),
    ]);
    if (!failed) {
      for (const result of ending) if (result.status === 'rejected') throw result.reason;
      for (const recorder of [...nodes, ...children].map((n) => n.events)) {
        recorder.assertNoErrors();
      }
    }
  }
}

// Starts one node per entry of `options` (extra options each), all seeding the first, and
// resolves once each sees all the others.
async function cluster(scope, options) {
  const name = uniqueCluster();
  const ports = randomPorts(options.length);
  const seed = [`127.0.0.1:${ports[0]}`];
  const nodes = options.map((extra, i) =>
    scope.node(manualOptions({ port: ports[i], cluster: name, peers: i === 0 ? [] : seed, ...extra }), `n${i}`),
  );
  await Promise.all(
    nodes.map((node) => {
      const others = ids(nodes.filter((other) => other !== node).map((other) => other.get_node_info()));
      return node.events.until(`${node.name} to see the others`, () => ids(node.get_nodes()).join() === others.join());
    }),
  );
  return nodes;
}

const idOf = (node) => node.get_node_info().id;

const isProbe = (data) => data !== null && typeof data === 'object' && !Buffer.isBuffer(data) && data.probe === true;

/**
 * Resolves once `sender` knows that `receiver` joined `event`: a message is only sent to a
 * node whose join has reached the sender, so the test sends probes until one arrives. Probes
 * are { probe: true }; per-pair ordering means every later message arrives too.
 */
async function ready(sender, receiver, event, ms = WAIT_MS) {
  const senderId = idOf(sender);
  let arrived = false;
  const onProbe = (data, from) => {
    if (isProbe(data) && from.id === senderId) arrived = true;
  };
  receiver.on(event, onProbe);
  try {
    const deadline = performance.now() + ms;
    while (!arrived) {
      if (performance.now() > deadline) {
        throw new Error(`${receiver.name}'s join of "${event}" had not reached ${sender.name} after ${ms} ms`);
      }
      await sender.send(event, { probe: true }, idOf(receiver));
      await delay(20);
    }
  } finally {
    receiver.off(event, onProbe);
  }
}

// espial's own event names, spelled out here (not taken from lib/events.js) so that the
// tests would notice one missing there.
const RESERVED_EVENTS = [
  'listening',
  'added_node',
  'removed_node',
  'updated_node',
  'node_accepted',
  'node_rejected',
  'new_master',
  'promotion',
  'demotion',
  'undelivered',
  'error',
  'newListener',
  'removeListener',
];

// The test-only protocol peer (tests/support/adversary.rs), built by `cargo test`, which
// npm test runs first.
const ADVERSARY = require('node:path').join(__dirname, '..', 'target', 'debug', 'examples', 'adversary');

// Runs the adversary against 127.0.0.1:port; resolves with the lines it printed. It bounds
// each of its own waits; the timeout here ends it should it hang anyway.
function adversary(port, clusterName, args) {
  return new Promise((resolve, reject) => {
    require('node:child_process').execFile(
      ADVERSARY,
      [String(port), clusterName, ...args],
      { timeout: 2 * WAIT_MS },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`adversary ${JSON.stringify(args)}: ${err.message} ${stderr}`));
        else resolve(stdout.split('\n').filter(Boolean));
      },
    );
  });
}

// Calls `attempt()` every 50 ms until it returns true, for at most `ms`.
async function eventually(what, attempt, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!(await attempt())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(50);
  }
}

module.exports = {
  ADVERSARY,
  adversary,
  eventually,
  NODE_EVENTS,
  RESERVED_EVENTS,
  WAIT_MS,
  randomPorts,
  uniqueCluster,
  loopbackOptions,
  manualOptions,
  waitFor,
  within,
  delay,
  Recorder,
  byId,
  ids,
  startChild,
  withNodes,
  cluster,
  idOf,
  isProbe,
  ready,
};
