'use strict';

// A job queue where only the master hands out work.
//
// - Workers (master_eligible: false, metadata { role: 'worker' }) join 'job'. For each job
//   they get, they work a little and send the result as a 'result' event.
// - Dispatchers (master-eligible, metadata { role: 'dispatcher' }) join 'result', so every
//   one of them knows which jobs are done. Whichever of them is master hands out the jobs
//   not yet done, one at a time per idle worker; the others only listen.
// - Halfway through, the master leaves (exit()). Another dispatcher becomes master at once
//   (new_master / promotion), and carries on with the jobs that are left: failover.
//
// Four nodes run in this process on 127.0.0.1, with ports and a cluster name of their own.
//
//   node examples/job-queue.js
//
// Exits 0 once every job is done and both masters handed out work, 1 if not within 20 s.

const crypto = require('node:crypto');
// In your application: require('espial')
const espial = require('..');

const JOBS = Array.from({ length: 12 }, (_, i) => ({ id: i + 1, n: i + 1 }));
const WORK_MS = 100; // what one job takes a worker
const REASSIGN_MS = 1000; // a job without a result by then is handed out again
const DEADLINE_MS = 20_000;

const cluster = `example-jobs-${crypto.randomBytes(4).toString('hex')}`;
const basePort = 20000 + crypto.randomInt(12000);
let nextPort = basePort;
const nodes = [];
const started = Date.now();

function log(name, text) {
  console.log(`${((Date.now() - started) / 1000).toFixed(2).padStart(5)}s  ${name.padEnd(6)} ${text}`);
}

function startNode(name, role) {
  const node = espial({
    network: {
      port: nextPort++,
      address: { local: '127.0.0.1' },
      multicast_interface: '127.0.0.1',
      multicast_port: basePort + 100,
    },
    cluster,
    master_eligible: role === 'dispatcher',
    master_election_timeout: 300,
    metadata: { name, role },
  });
  node.name = name;
  node.on('error', (err) => fail(`${name}: ${err.code} ${err.message}`));
  nodes.push(node);
  if (role === 'worker') worker(node);
  else dispatcher(node);
  return node;
}

// A worker: does each job it is given and sends the result to every dispatcher.
function worker(node) {
  node.join('job');
  node.on('job', (job, from) => {
    setTimeout(() => {
      const result = { id: job.id, value: job.n * job.n, worker: node.name };
      node.send('result', result).catch((err) => log(node.name, `result ${job.id} not sent: ${err.code}`));
    }, WORK_MS);
    log(node.name, `job ${job.id} from ${from.metadata.name}`);
  });
}

// A dispatcher: records every result; while master, hands out the jobs not yet done.
function dispatcher(node) {
  const done = new Map(); // job id -> result
  const inFlight = new Map(); // job id -> { worker id, at }, of jobs this node handed out
  node.done = done;
  node.handedOut = 0;
  node.join('result');
  node.on('result', (result) => {
    if (!done.has(result.id)) done.set(result.id, result);
    inFlight.delete(result.id);
    if (node.is_master()) log(node.name, `result ${result.id} = ${result.value} (by ${result.worker}); ${done.size}/${JOBS.length} done`);
    if (done.size === JOBS.length) node.emit('all_done');
  });
  node.on('promotion', ({ previous_master }) => {
    const before = previous_master ? previous_master.metadata.name : 'nobody';
    log(node.name, `is master now (after ${before}); ${JOBS.length - done.size} jobs left`);
  });
  node.on('removed_node', (gone) => {
    // Its jobs go back to the queue.
    for (const [id, job] of inFlight) if (job.worker === gone.id) inFlight.delete(id);
  });
  const timer = setInterval(() => {
    if (!node.is_master()) return;
    const now = Date.now();
    for (const [id, job] of inFlight) if (now - job.at > REASSIGN_MS) inFlight.delete(id);
    const busy = new Set([...inFlight.values()].map((job) => job.worker));
    const idle = node.get_nodes().filter((n) => n.metadata.role === 'worker' && !busy.has(n.id));
    const waiting = JOBS.filter((job) => !done.has(job.id) && !inFlight.has(job.id));
    for (const [i, target] of idle.entries()) {
      const job = waiting[i];
      if (!job) break;
      inFlight.set(job.id, { worker: target.id, at: now });
      node.handedOut++;
      node.send('job', job, target).catch(() => inFlight.delete(job.id)); // the worker left: hand it out again
    }
  }, 20);
  node.once('exiting', () => clearInterval(timer));
}

async function stop(node) {
  node.emit('exiting');
  await node.exit();
}

const deadline = setTimeout(() => fail(`not done within ${DEADLINE_MS / 1000} s`), DEADLINE_MS);

function fail(message) {
  console.error(`job-queue example failed: ${message}`);
  process.exitCode = 1;
  clearTimeout(deadline);
  for (const node of nodes) stop(node);
}

(async () => {
  const first = startNode('disp-1', 'dispatcher');
  await new Promise((resolve) => first.once('promotion', resolve));
  const second = startNode('disp-2', 'dispatcher');
  startNode('work-1', 'worker');
  startNode('work-2', 'worker');

  // Halfway through, the master leaves.
  await new Promise((resolve) => {
    const check = () => first.done.size >= JOBS.length / 2 && resolve();
    first.on('result', check);
  });
  log(first.name, `leaves, having handed out ${first.handedOut} jobs`);
  const failover = new Promise((resolve) => second.once('promotion', resolve));
  await stop(first);
  nodes.splice(nodes.indexOf(first), 1);
  await failover;

  // The new master finishes the queue.
  if (second.done.size < JOBS.length) await new Promise((resolve) => second.once('all_done', resolve));
  const values = JOBS.map((job) => second.done.get(job.id).value);
  const expected = JOBS.map((job) => job.n * job.n);
  if (JSON.stringify(values) !== JSON.stringify(expected)) return fail(`wrong results ${values}`);
  if (second.handedOut === 0) return fail('the new master handed out no work');
  log(second.name, `handed out ${second.handedOut} jobs; all ${JOBS.length} done: ${values.join(' ')}`);
  await Promise.all(nodes.map(stop));
  clearTimeout(deadline);
})().catch((err) => fail(err.stack));
