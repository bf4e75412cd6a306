'use strict';

// A test bed of real hosts made of Linux network namespaces (needs root and iproute2):
//
//   <prefix>-br   a namespace holding two bridges, br0 and br1 (multicast snooping off, so
//                 beacons are flooded like on a dumb switch)
//   <prefix>-hK   host K (1 ≤ K ≤ 250): lo up, and eth0 = 10.77.0.K/24, one end of a veth
//                 pair whose other end, hK, is a port of br0 in the bridge namespace
//
// Testbed.create(count, { family: 'ipv6' }) gives the hosts fd77::K/64 instead (IPv6 only:
// no IPv4 address at all), { family: 'dual' } both. Duplicate address detection is off in
// every host (sysctl accept_dad = 0 before eth0 exists, and `nodad` on the address), so an
// address is usable as soon as it is added rather than a second or two later.
//
// Nothing here touches the namespace the tests run in: every link is created directly in
// its own namespace, and deleting the namespaces removes every link. The prefix is random,
// so parallel runs never meet. Every process started on a host is killed, and every
// namespace deleted, by destroy(), which also runs on process exit, SIGINT and SIGTERM.
//
//   const bed = Testbed.create(3);          // throws NetnsUnavailable if namespaces fail
//   const a = await bed.runNode(1, options); // `ip netns exec <prefix>-h1 node node-child.js`
//   bed.cutLink(1); bed.restoreLink(1);      // host 1's port on the bridge down / up
//   bed.moveToBridge(2, 'br1');              // partition; moveToBridge(2, 'br0') heals
//   await bed.destroy();

const crypto = require('node:crypto');
const path = require('node:path');
const { execFileSync, spawn } = require('node:child_process');
const { EventEmitter } = require('node:events');
const { performance } = require('node:perf_hooks');
const readline = require('node:readline');
const { Recorder, within, WAIT_MS } = require('../support.js');

const NODE_CHILD = path.join(__dirname, 'node-child.js');
const SUBNET = '10.77.0';
const SUBNET6 = 'fd77::';

class NetnsUnavailable extends Error {}

function ip(...args) {
  return execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }).toString();
}

// Every live test bed, so that an exit or a signal can tear all of them down.
const live = new Set();
let hooksInstalled = false;
function installHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const bed of [...live]) bed.destroySync();
  });
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      for (const bed of [...live]) bed.destroySync();
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    });
  }
}

// Whether namespaces can be made here: the reason they cannot, or null.
function probe() {
  const name = `esp${crypto.randomBytes(3).toString('hex')}`;
  try {
    ip('netns', 'add', name);
  } catch (err) {
    return `\`ip netns add\` failed: ${String(err.stderr || err.message).trim()}`;
  }
  try {
    ip('-n', name, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', name, 'link', 'add', 'name', 'pva', 'type', 'veth', 'peer', 'name', 'pvb');
  } catch (err) {
    return `bridges or veth pairs cannot be made: ${String(err.stderr || err.message).trim()}`;
  } finally {
    try {
      ip('netns', 'del', name);
    } catch {
      // nothing to do
    }
  }
  return null;
}

// For node:test: `netnsTest(t)` at the start of a test skips it if ESPIAL_SKIP_NETNS=1 and
// namespaces are not available, and fails it with the reason otherwise.
let probed;
function requireNetns(t) {
  if (probed === undefined) probed = probe();
  if (probed === null) return true;
  if (process.env.ESPIAL_SKIP_NETNS === '1') {
    t.skip(`network namespaces unavailable (${probed}); skipped because ESPIAL_SKIP_NETNS=1`);
    return false;
  }
  throw new NetnsUnavailable(
    `network namespace tests need root and iproute2 (ip netns, veth, bridge): ${probed}. ` +
      'Run them as root (CI does), or set ESPIAL_SKIP_NETNS=1 to skip them.',
  );
}

class Testbed {
  /** Creates the bridge namespace and `count` hosts; throws NetnsUnavailable on failure. */
  static create(count, { family = 'ipv4' } = {}) {
    if (!(count >= 1 && count <= 250)) throw new RangeError('1 to 250 hosts');
    if (!['ipv4', 'ipv6', 'dual'].includes(family)) throw new RangeError(`no family ${family}`);
    const bed = new Testbed(`es${crypto.randomBytes(3).toString('hex')}`);
    bed.family = family;
    installHooks();
    live.add(bed);
    try {
      bed.#build(count);
    } catch (err) {
      bed.destroySync();
      throw new NetnsUnavailable(`cannot build the test bed: ${String(err.stderr || err.message).trim()}`);
    }
    return bed;
  }

  #namespaces = [];
  #children = new Set();
  #bridgeOf = new Map();
  #cleanups = [];

  constructor(prefix) {
    this.prefix = prefix;
    this.bridgeNs = `${prefix}-br`;
    this.hosts = [];
  }

  #build(count) {
    ip('netns', 'add', this.bridgeNs);
    this.#namespaces.push(this.bridgeNs);
    ip('-n', this.bridgeNs, 'link', 'set', 'lo', 'up');
    for (const br of ['br0', 'br1']) {
      ip('-n', this.bridgeNs, 'link', 'add', br, 'type', 'bridge', 'mcast_snooping', '0', 'stp_state', '0');
      ip('-n', this.bridgeNs, 'link', 'set', br, 'up');
    }
    for (let k = 1; k <= count; k++) this.#addHost(k);
  }

  #addHost(k) {
    const ns = this.ns(k);
    ip('netns', 'add', ns);
    this.#namespaces.push(ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    if (this.family !== 'ipv4') this.exec(k, 'sh', '-c', 'for c in all default; do echo 0 > /proc/sys/net/ipv6/conf/$c/accept_dad; done');
    ip('link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', this.port(k), 'netns', this.bridgeNs);
    if (this.family !== 'ipv6') ip('-n', ns, 'addr', 'add', `${SUBNET}.${k}/24`, 'dev', 'eth0');
    if (this.family !== 'ipv4') ip('-n', ns, 'addr', 'add', `${this.addr6(k)}/64`, 'dev', 'eth0', 'nodad');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', this.bridgeNs, 'link', 'set', this.port(k), 'master', 'br0');
    ip('-n', this.bridgeNs, 'link', 'set', this.port(k), 'up');
    this.#bridgeOf.set(k, 'br0');
    this.hosts.push(k);
  }

  /** Namespace of host k. */
  ns(k) {
    return `${this.prefix}-h${k}`;
  }

  /** Address of host k: its IPv4 address, or on an IPv6-only bed its IPv6 one. */
  addr(k) {
    return this.family === 'ipv6' ? this.addr6(k) : `${SUBNET}.${k}`;
  }

  /** IPv6 address of host k (IPv6 and dual-stack beds). */
  addr6(k) {
    return `${SUBNET6}${k}`;
  }

  /** Runs `command` (argv) in host k's namespace and waits for it; returns its stdout. */
  exec(k, ...command) {
    return execFileSync('ip', ['netns', 'exec', this.ns(k), ...command], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 10_000,
    }).toString();
  }

  /** Name of host k's port on the bridge, in the bridge namespace. */
  port(k) {
    return `h${k}`;
  }

  /** Host k's port down: its packets go nowhere, and nothing tells either side. */
  cutLink(k) {
    ip('-n', this.bridgeNs, 'link', 'set', this.port(k), 'down');
  }

  restoreLink(k) {
    ip('-n', this.bridgeNs, 'link', 'set', this.port(k), 'up');
  }

  /** Moves host k's port to bridge `br` ('br0' or 'br1'): hosts on different bridges are partitioned. */
  moveToBridge(k, br) {
    if (br !== 'br0' && br !== 'br1') throw new RangeError(`no bridge ${br}`);
    ip('-n', this.bridgeNs, 'link', 'set', this.port(k), 'nomaster');
    ip('-n', this.bridgeNs, 'link', 'set', this.port(k), 'master', br);
    ip('-n', this.bridgeNs, 'link', 'set', this.port(k), 'up');
    this.#bridgeOf.set(k, br);
  }

  /** Runs `command` (an argv array) in namespace `ns`; returns the ChildProcess. */
  spawnIn(ns, command, options = {}) {
    const proc = spawn('ip', ['netns', 'exec', ns, ...command], options);
    this.#children.add(proc);
    proc.once('exit', () => this.#children.delete(proc));
    return proc;
  }

  /**
   * Starts an espial node with `options` on host k (node-child.js). Resolves, once the node
   * has reported its own object, with a handle (see launchNode).
   */
  async runNode(k, options, name = `h${k}`) {
    const proc = this.spawnIn(this.ns(k), [process.execPath, NODE_CHILD, JSON.stringify(options)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const child = await launchNode(proc, name);
    child.host = k;
    return child;
  }

  /** Runs `fn` (synchronous) at teardown, after the processes are killed: for files a test made. */
  atDestroy(fn) {
    this.#cleanups.push(fn);
  }

  /** Kills every process started here and deletes every namespace; safe to call twice. */
  async destroy() {
    const waits = [...this.#children].map(
      (proc) =>
        new Promise((resolve) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
          proc.once('exit', resolve);
          proc.kill('SIGKILL');
          setTimeout(resolve, 5000).unref();
        }),
    );
    await Promise.all(waits);
    this.destroySync();
  }

  /** Synchronous teardown, for exit handlers. */
  destroySync() {
    for (const proc of this.#children) {
      try {
        proc.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    // Anything else still running inside one of our namespaces (a capture, say).
    for (const ns of this.#namespaces) {
      try {
        for (const pid of ip('netns', 'pids', ns).split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // already gone
          }
        }
      } catch {
        // namespace already gone
      }
    }
    for (const fn of this.#cleanups.splice(0)) {
      try {
        fn();
      } catch {
        // best effort: the namespaces go regardless
      }
    }
    for (const ns of this.#namespaces.reverse()) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
    this.#namespaces = [];
    live.delete(this);
  }
}

/**
 * Talks to a node-child.js process `proc` (stdio pipes). Resolves, once the node has reported
 * its own object, with { name, node, pid, events (a support.js Recorder), request(type, data),
 * kill(), stop(), exited, output() }.
 */
async function launchNode(proc, name) {
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (text) => {
    stderr += text;
    if (stderr.length > 20_000) stderr = stderr.slice(-20_000);
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const relay = new EventEmitter();
  const events = new Recorder(relay, name);
  const replies = new Map();
  let nextRequest = 0;
  let gotInfo;
  const info = new Promise((resolve) => (gotInfo = resolve));
  const tracked = new Set();
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      stderr += `${line}\n`;
      return;
    }
    if (msg.espial === 'info') gotInfo(msg.node);
    else if (msg.espial === 'reply') {
      replies.get(msg.id)?.(msg.data);
      replies.delete(msg.id);
    } else if (msg.espial === 'event') {
      let arg = msg.arg;
      if (msg.event === 'error') arg = Object.assign(new Error(arg.message), { code: arg.code });
      relay.emit(msg.event, arg, msg.from);
    }
  });
  const running = () => proc.exitCode === null && proc.signalCode === null;
  const child = {
    name,
    proc,
    pid: proc.pid,
    events,
    exited,
    output: () => stderr,
    request(type, data = {}, ms = WAIT_MS) {
      if (type === 'join' && !tracked.has(data.event)) {
        tracked.add(data.event);
        events.track(data.event);
      }
      const id = nextRequest++;
      const reply = new Promise((resolve) => replies.set(id, resolve));
      proc.stdin.write(`${JSON.stringify({ id, type, ...data })}\n`);
      return within(ms, reply, () => `${name}: no reply to "${type}" within ${ms} ms; stderr: ${stderr}`);
    },
    /** SIGKILL; resolves with the time it was sent once the process has ended. */
    async kill() {
      const at = performance.now();
      proc.kill('SIGKILL');
      await within(WAIT_MS, exited, () => `${name}: still running after SIGKILL`);
      return at;
    },
    /** Ends the process however it is. */
    async stop() {
      if (running()) proc.kill('SIGKILL');
      await within(WAIT_MS, exited, () => `${name}: still running after SIGKILL`);
    },
  };
  try {
    const endedEarly = exited.then(() => {
      throw new Error(`${name} ended early; stderr: ${stderr}`);
    });
    child.node = await within(WAIT_MS, Promise.race([info, endedEarly]), () => `${name}: no node info; stderr: ${stderr}`);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return child;
}

/** Starts node-child.js with `options` in this network namespace (no test bed needed). */
function runLocalNode(options, name = 'node') {
  const proc = spawn(process.execPath, [NODE_CHILD, JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'pipe'] });
  return launchNode(proc, name);
}

/**
 * Runs `body(bed)` on a fresh test bed of `count` hosts and always destroys it. Fails with a
 * clear message where namespaces cannot be made, or skips `t` if ESPIAL_SKIP_NETNS=1.
 */
async function withTestbed(t, count, body, options) {
  if (!requireNetns(t)) return;
  const bed = Testbed.create(count, options);
  try {
    await body(bed);
  } finally {
    await bed.destroy();
  }
}

module.exports = { Testbed, withTestbed, requireNetns, NetnsUnavailable, SUBNET, SUBNET6, launchNode, runLocalNode };
