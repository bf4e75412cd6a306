'use strict';

// Formation at scale (issue 19): N node processes, each on its own loopback address
// 127.0.0.K (all on one port), started at the same instant, finding each other by one seed
// (127.0.0.1) or by multicast. Without multicast every node also scans the /24 of its address
// (manual discovery's default: 254 dials a node, most refused); --seeds-only turns the scan
// off (`network.subnets: []`), as the "seeds only" rows were. Prints, from the last `listening`: when every node saw every
// other under one master, how many nodes emitted `promotion`, and what the formation cost:
// CPU (user + sys) per process and per link, bytes sent per node and per join, handshakes
// beyond the N(N-1)/2 pairs. Run inside a network namespace of its own:
//
//   unshare -n -- bash -c 'ip link set lo up && node bench/formation.js --nodes 100 [--multicast | --seeds-only]'
//
// CPU time, not wall-clock, is the figure to compare on a shared machine.
//
// Profiling one node (the K-th, 0 being the seed; default the middle one):
//   --profile-node K --node-args "--cpu-prof --cpu-prof-dir=/tmp/prof"   (a V8 profile)
//   --profile-node K --perf /tmp/node.perf.data [--perf-args "--call-graph dwarf"]
// `perf record` follows that node's process from its fork until it is told to exit; the
// node arguments go to that process only. --cpu-each prints every node's CPU time.
// `calibration_ms` is the VM's speed on the day (see calibrationMs). `last_listening_epoch_ms`
// lines a system-wide profile up with the run:
//   perf record -a -g -k CLOCK_REALTIME -o F -- sleep 36 & (then this benchmark), and
//   perf report -i F --time T,T+formed (T the last listening, in seconds).

const { fork, spawn } = require('node:child_process');
const crypto = require('node:crypto');

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? dflt : args[i + 1];
};
const CHILD = process.env.ESPIAL_FORMATION_CHILD;

if (CHILD) {
  // One node: reports `listening`, `promotion`, its member count, and at the end its stats
  // and CPU time.
  // ESPIAL_MODULE: another build to measure (a checkout of main, say), for before/after.
  const espial = require(process.env.ESPIAL_MODULE || '..');
  const options = JSON.parse(CHILD);
  const node = espial(options);
  node.on('error', (e) => process.send({ error: `${e.code}: ${e.message}` }));
  node.on('listening', () => process.send({ listening: Date.now() }));
  node.on('promotion', () => process.send({ promotion: true }));
  const report = () => process.send({ members: node.get_nodes().length, master: node.get_master()?.id ?? null });
  node.on('added_node', report);
  node.on('new_master', report);
  process.on('message', (m) => {
    if (m === 'stats') {
      const cpu = process.cpuUsage();
      process.send({ stats: node.stats(), cpu_ms: (cpu.user + cpu.system) / 1000 });
    } else if (m === 'exit') {
      node.exit(() => process.exit(0));
    }
  });
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

// This VM's speed on the day, from work that is not ours: the CPU time of 300 P-256 key
// exchanges by Node's own OpenSSL (two key pairs and a shared secret each), the least of
// three tries. The same espial build took 190 ms of CPU per process to form 100 on one day
// and 375-414 on another (BENCHMARKS.md): figures from different days compare only
// alongside this.
function calibrationMs() {
  let least = Infinity;
  for (let round = 0; round < 3; round++) {
    const start = process.cpuUsage();
    for (let i = 0; i < 300; i++) {
      const a = crypto.createECDH('prime256v1');
      const b = crypto.createECDH('prime256v1');
      a.generateKeys();
      a.computeSecret(b.generateKeys());
    }
    const used = process.cpuUsage(start);
    least = Math.min(least, (used.user + used.system) / 1000);
  }
  return +least.toFixed(1);
}

async function main() {
  const n = Number(flag('nodes', 10));
  const calibration = calibrationMs();
  const multicast = args.includes('--multicast');
  const seedsOnly = args.includes('--seeds-only');
  const limitMs = Number(flag('limit', 60_000));
  const port = 20000 + crypto.randomInt(12000);
  const cluster = `formation-${crypto.randomBytes(4).toString('hex')}`;
  const state = Array.from({ length: n }, () => ({ members: 0, master: null, listening: null, promotions: 0 }));
  const children = [];
  const profiled = Number(flag('profile-node', Math.floor(n / 2)));
  const nodeArgs = (flag('node-args', '') || '').split(' ').filter(Boolean);
  const perfOut = flag('perf', null);
  let perf = null;
  let formedAt = null;
  // Where the backlog stands when the last node listens: members seen by all (each pair
  // counted from both ends, so halved), and when 90 % and 99 % of them were seen.
  let seenAtLastListening = null;
  const seenAt = { 90: null, 99: null };
  const formed = () =>
    state.every((s) => s.listening && s.members === n - 1 && s.master && s.master === state[0].master);
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const seen = state.map((s) => s.members).join(' ');
      const masters = new Set(state.map((s) => s.master)).size;
      const listening = state.filter((s) => s.listening).length;
      reject(new Error(`not formed after ${limitMs} ms: ${listening} listening, ${masters} masters, members seen: ${seen}`));
    }, limitMs);
    for (let k = 0; k < n; k++) {
      const address = `127.0.0.${k + 1}`;
      const network = multicast
        ? { port, address: { local: address }, multicast_interface: address, multicast_port: port + 1 }
        : { port, address: { local: address }, multicast: false, peers: [`127.0.0.1:${port}`], ...(seedsOnly ? { subnets: [] } : {}) };
      const child = fork(__filename, [], {
        env: { ...process.env, ESPIAL_FORMATION_CHILD: JSON.stringify({ network, cluster }) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        execArgv: k === profiled ? nodeArgs : [],
      });
      children.push(child);
      if (k === profiled && perfOut) {
        const extra = (flag('perf-args', '') || '').split(' ').filter(Boolean);
        const perfArgs = ['record', '-q', '-F', '1999', ...extra, '-o', perfOut, '-p', String(child.pid)];
        perf = spawn('perf', perfArgs, { stdio: ['ignore', 'inherit', 'inherit'] });
      }
      child.on('message', (m) => {
        const s = state[k];
        if (m.error) console.error(`node ${k}: ${m.error}`);
        if (m.listening) {
          s.listening = m.listening;
          if (state.every((t) => t.listening)) seenAtLastListening = state.reduce((t, x) => t + x.members, 0) / 2;
        }
        if (m.promotion) s.promotions++;
        if ('members' in m) {
          s.members = m.members;
          s.master = m.master;
          const seen = state.reduce((t, x) => t + x.members, 0);
          for (const p of [90, 99]) if (seenAt[p] === null && seen >= (p / 100) * n * (n - 1)) seenAt[p] = Date.now();
        }
        if (formedAt === null && formed()) {
          formedAt = Date.now();
          clearTimeout(timer);
          resolve();
        }
      });
    }
  });
  try {
    await done;
    // Late promotions would come within an election timeout.
    await new Promise((r) => setTimeout(r, 1500));
    const stats = await Promise.all(
      children.map((c) => new Promise((resolve) => {
        c.once('message', function wait(m) {
          if (m.stats) resolve(m);
          else c.once('message', wait);
        });
        c.send('stats');
      })),
    );
    const lastListening = Math.max(...state.map((s) => s.listening));
    const links = (n * (n - 1)) / 2;
    const cpu = stats.reduce((t, s) => t + s.cpu_ms, 0);
    const bytes = stats.reduce((t, s) => t + s.stats.bytes_out, 0);
    const handshakes = stats.reduce((t, s) => t + s.stats.handshakes_completed, 0) / 2;
    if (args.includes('--cpu-each')) console.error(stats.map((s) => s.cpu_ms.toFixed(0)).join(' '));
    const result = {
      nodes: n,
      discovery: multicast ? 'multicast' : seedsOnly ? 'seeds only' : 'seeds and /24 scan',
      formed_ms_after_last_listening: formedAt - lastListening,
      // The backlog: how long the starts took, what was linked when the last one listened,
      // and when most of the rest was (ms after the last listening; negative: before it).
      listening_spread_ms: lastListening - Math.min(...state.map((s) => s.listening)),
      pairs_seen_at_last_listening: seenAtLastListening,
      ms_to_90_percent: seenAt[90] - lastListening,
      ms_to_99_percent: seenAt[99] - lastListening,
      last_listening_epoch_ms: lastListening,
      calibration_ms: calibration,
      promotions: state.reduce((t, s) => t + s.promotions, 0),
      cpu_ms_per_process: +(cpu / n).toFixed(1),
      cpu_ms_per_link: +(cpu / links).toFixed(2),
      // Every node joined once: the bytes a join cost, all nodes together.
      bytes_per_join: Math.round(bytes / n),
      extra_handshakes: Math.round(handshakes - links),
      // Probes asked of others for a silent member (each ask sends 3): asks during
      // formation mean answers came late, which a loaded host makes more likely.
      indirect_probes: stats.reduce((t, s) => t + s.stats.indirect_probes, 0),
      probes_sent_per_process: Math.round(stats.reduce((t, s) => t + s.stats.probes_sent, 0) / n),
    };
    console.log(JSON.stringify(result));
    if (process.env.FORMATION_ALL_STATS) {
      const sum = {};
      for (const st of stats) for (const [k, v] of Object.entries(st.stats)) if (typeof v === 'number') sum[k] = (sum[k] || 0) + v;
      console.log(JSON.stringify(sum));
    }
  } finally {
    for (const c of children) c.send('exit');
    // A profiled node writes its profile as it exits: given time to.
    await new Promise((r) => setTimeout(r, nodeArgs.length ? 5000 : 1000));
    for (const c of children) c.kill('SIGKILL');
    if (perf) {
      // perf ends by itself with the process it follows; SIGINT should it still run.
      if (perf.exitCode === null) perf.kill('SIGINT');
      await new Promise((r) => (perf.exitCode !== null ? r() : perf.once('exit', r)));
    }
  }
}
