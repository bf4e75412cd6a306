'use strict';

// Where an idle espial node's CPU goes, thread by thread: N nodes (5 by default) on
// 127.0.0.1…N inside a network namespace whose only interface is lo (the script re-runs
// itself under `unshare -n` when it is not in one), left to form, then left alone; over the
// window, for every thread of every node: CPU time and how many times it was put on a CPU
// (`/proc/<pid>/task/<tid>/schedstat`: ns on CPU, ns waiting, timeslices run), and its
// voluntary and involuntary context switches (`/proc/<pid>/task/<tid>/status`). Threads
// are grouped by name (`comm`); the figures are per node and per second, the median node's
// and all nodes' mean. CPU time, not wall clock: other work on the machine changes them
// far less than rates.
//
//   node bench/idle-threads.js [--nodes 5] [--settle-ms 3000] [--window-ms 10000]
//                              [--hold-ms 0] [--node PATH] [--json FILE]
//
// ESPIAL_BENCH_MODULE=/path/to/package measures another build (as bench/run.js does).
// --hold-ms keeps the cluster up that long after the window, printing the nodes' pids, for
// `perf stat -p`, `perf record -g -p` or `strace -f -c -p` from another shell (entered with
// `nsenter -t <pid> -n` or not: those tools do not need the namespace).

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { benchNode } = require('../scripts/bench-node.js');

const argv = process.argv.slice(2);
const value = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
};
const NODES = Number(value('nodes', 5));
const SETTLE_MS = Number(value('settle-ms', 3000));
const WINDOW_MS = Number(value('window-ms', 10_000));
const HOLD_MS = Number(value('hold-ms', 0));
const FORM_MS = 30_000;
const JSON_OUT = value('json', null);
const NODE = value('node', null) ?? benchNode() ?? process.execPath;
const WORKER = path.join(__dirname, 'worker.js');
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

if (!(NODES >= 2 && NODES <= 50)) {
  console.error('idle-threads: --nodes takes 2 to 50');
  process.exit(2);
}

// Only lo here, or run again in a namespace of our own: no datagram leaves this machine.
// (/proc/self/net/dev is this network namespace's; /sys/class/net is the mounter's.)
const interfaces = fs
  .readFileSync('/proc/self/net/dev', 'utf8')
  .split('\n')
  .slice(2)
  .map((line) => line.split(':')[0].trim())
  .filter(Boolean);
if (interfaces.length !== 1 || interfaces[0] !== 'lo') {
  if (process.env.IDLE_THREADS_INNER) {
    console.error(`idle-threads: interfaces ${interfaces.join(', ')} under unshare -n`);
    process.exit(1);
  }
  process.env.IDLE_THREADS_INNER = '1';
  const args = [process.execPath, __filename, ...argv].map((a) => `'${a.replace(/'/g, "'\\''")}'`);
  const res = spawnSync('unshare', ['-n', '--', 'sh', '-c', `ip link set lo up && exec ${args.join(' ')}`], {
    stdio: 'inherit',
  });
  if (res.error || res.status === null) {
    console.error('idle-threads: cannot run under `unshare -n` (run as root)');
    process.exit(1);
  }
  process.exit(res.status);
}

// One sample of every thread of `pid`: tid → { comm, ns, runs, vol, invol }.
function threads(pid) {
  const out = new Map();
  let tids;
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      // The main thread (the JavaScript one) is named like V8's helper threads: told apart.
      const name = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const comm = Number(tid) === pid ? `${name} (main)` : name;
      const [ns, , runs] = fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
      const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const vol = Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)[1]);
      const invol = Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)[1]);
      out.set(tid, { comm, ns, runs, vol, invol });
    } catch {
      // the thread ended
    }
  }
  return out;
}

// What each thread name of one process did between two samples, per second.
function diff(before, after, seconds) {
  const byName = new Map();
  for (const [tid, b] of after) {
    // A thread born in the window counts from 0.
    const a = before.get(tid) ?? { ns: 0, runs: 0, vol: 0, invol: 0 };
    const row = byName.get(b.comm) ?? { threads: 0, cpuUs: 0, runs: 0, vol: 0, invol: 0 };
    row.threads++;
    row.cpuUs += (b.ns - a.ns) / 1e3 / seconds;
    row.runs += (b.runs - a.runs) / seconds;
    row.vol += (b.vol - a.vol) / seconds;
    row.invol += (b.invol - a.invol) / seconds;
    byName.set(b.comm, row);
  }
  return byName;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const procs = [];

async function main() {
  const hosts = Array.from({ length: NODES }, (_, i) => `127.0.0.${i + 1}`);
  const states = new Map();
  let changed = () => {};
  process.on('exit', stopAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(1));
  for (let k = 1; k <= NODES; k++) {
    const spec = { system: 'espial', ip: hosts[k - 1], k, hosts, loopback: true, broadcast: null };
    const p = spawn(NODE, [WORKER, JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    p.on('message', (msg) => {
      if (msg.type === 'state') states.set(k, msg.members.length);
      if (msg.type === 'error') console.error(`node ${k}: ${msg.message}`);
      changed();
    });
    procs.push(p);
  }
  const formed = () => procs.every((_, i) => states.get(i + 1) === NODES - 1);
  const ok = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), FORM_MS);
    changed = () => {
      if (formed()) {
        clearTimeout(timer);
        resolve(true);
      }
    };
    changed();
  });
  if (!ok) throw new Error(`${NODES} nodes did not see each other within ${FORM_MS} ms`);
  await delay(SETTLE_MS);
  const pids = procs.map((p) => p.pid);
  const t0 = process.hrtime.bigint();
  const before = pids.map(threads);
  await delay(WINDOW_MS);
  const after = pids.map(threads);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (!formed()) throw new Error('the cluster changed during the window');
  const perNode = pids.map((_, i) => diff(before[i], after[i], seconds));
  const names = [...new Set(perNode.flatMap((m) => [...m.keys()]))].sort();
  const zero = { threads: 0, cpuUs: 0, runs: 0, vol: 0, invol: 0 };
  const rows = names.map((name) => {
    const of = (key) => perNode.map((m) => (m.get(name) ?? zero)[key]);
    const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
    return {
      name,
      threads: median(of('threads')),
      cpuUs: median(of('cpuUs')),
      cpuUsMean: mean(of('cpuUs')),
      runs: median(of('runs')),
      vol: median(of('vol')),
      invol: median(of('invol')),
    };
  });
  const totals = perNode.map((m) => [...m.values()].reduce((a, r) => a + r.cpuUs, 0));
  const runs = perNode.map((m) => [...m.values()].reduce((a, r) => a + r.runs, 0));
  const header = `${NODES} idle espial nodes on 127.0.0.1…${NODES} (unshare -n), ${seconds.toFixed(1)} s window after ${SETTLE_MS} ms of rest; module ${process.env.ESPIAL_BENCH_MODULE || path.join(__dirname, '..')}; node ${NODE}`;
  console.log(header);
  console.log('per node, median node (threads grouped by name): CPU µs/s, times run/s, voluntary/s, involuntary switches/s');
  console.log('thread name        n   CPU µs/s (mean)    runs/s   vol/s  invol/s');
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(16)} ${String(r.threads).padStart(3)} ${r.cpuUs.toFixed(1).padStart(9)} (${r.cpuUsMean.toFixed(1).padStart(7)}) ${r.runs.toFixed(1).padStart(9)} ${r.vol.toFixed(1).padStart(7)} ${r.invol.toFixed(1).padStart(8)}`,
    );
  }
  console.log(
    `whole process: median ${(median(totals) / 1e4).toFixed(3)} % of a core (${median(totals).toFixed(0)} µs/s), nodes ${totals.map((t) => (t / 1e4).toFixed(3)).join(' ')} %; runs/s median ${median(runs).toFixed(1)}`,
  );
  if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify({ header, rows, totals, runs, seconds }, null, 2));
  if (HOLD_MS > 0) {
    console.log(`holding ${HOLD_MS} ms; pids: ${pids.join(' ')}`);
    await delay(HOLD_MS);
  }
}

main()
  .catch((err) => {
    console.error(`idle-threads: ${err.message}`);
    process.exitCode = 1;
  })
  .finally(() => {
    stopAll();
    setTimeout(() => process.exit(), 200);
  });

// Every node started here ends here.
function stopAll() {
  for (const p of procs) {
    try {
      p.kill('SIGKILL');
    } catch {
      // gone
    }
  }
}
