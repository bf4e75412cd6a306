'use strict';

// Runs one seed of the fault test on a namespace test bed (../netns/testbed.js): starts one
// agent per host, plays the seed's schedule, heals everything, waits for one membership and
// one master, lets traffic settle, stops it, collects every report and runs the checks.
// Every wait is bounded (config.js); the test bed is destroyed whatever happens (also on
// SIGINT/SIGTERM and exit, by the test bed's own hooks).

const path = require('node:path');
const readline = require('node:readline');
const crypto = require('node:crypto');
const { Testbed } = require('../netns/testbed.js');
const { generate, describe } = require('./schedule.js');
const { checkEvents, checkOrder, checkDelivery, missingBetween, short } = require('./checks.js');

const AGENT = path.join(__dirname, 'agent.js');
const PORT = 27272;
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function nodeOptions(bed, k, schedule, setup, cfg) {
  const network = { port: PORT, address: { local: bed.addr(k) }, host_name: `h${k}` };
  if (schedule.discovery === 'multicast') {
    network.multicast_interface = bed.addr(k);
    network.multicast_port = setup.multicastPort;
  } else {
    network.multicast = false;
    network.subnets = [];
    network.peers = Array.from({ length: schedule.hosts }, (_, i) => i + 1)
      .filter((j) => j !== k)
      .map((j) => `${bed.addr(j)}:${PORT}`);
  }
  return { network, cluster: setup.cluster, send_presence_frequency: cfg.presenceMs };
}

class Run {
  constructor(seed, cfg, log) {
    this.cfg = cfg;
    this.log = log;
    this.schedule = generate(seed, { phaseMs: cfg.faultPhaseMs, startMs: cfg.faultStartMs });
    this.setup = {
      cluster: `faults-${crypto.randomBytes(6).toString('hex')}`,
      multicastPort: 20000 + crypto.randomInt(12000),
    };
    this.processes = []; // every process ever started, in start order
    this.current = new Map(); // host -> the process running there (undefined while down)
    this.incarnations = new Map();
    this.notes = []; // steps that could not be played as drawn
    this.t0 = Date.now();
    this.pending = new Set(); // restarts and exits under way
  }

  rel(at) {
    return at - this.t0;
  }

  /** Starts the agent on host k; resolves with its process record once it reports its id. */
  async start(k) {
    const inc = (this.incarnations.get(k) ?? 0) + 1;
    this.incarnations.set(k, inc);
    const options = nodeOptions(this.bed, k, this.schedule, this.setup, this.cfg);
    const proc = this.bed.spawnIn(this.bed.ns(k), [process.execPath, AGENT, JSON.stringify(options), String(this.cfg.sendEveryMs)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const p = { key: `h${k}#${inc}`, host: k, id: undefined, end: 'alive', events: [], report: undefined, proc, stderr: '' };
    p.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    proc.stdin.on('error', () => {}); // a write to a process that just died
    proc.stderr.setEncoding('utf8').on('data', (text) => {
      p.stderr = (p.stderr + text).slice(-200_000);
    });
    const replies = new Map();
    let rid = 0;
    let gotId;
    const info = new Promise((resolve) => (gotId = resolve));
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        p.stderr += `${line}\n`;
        return;
      }
      if (msg.t === 'info') gotId(msg.id);
      else if (msg.t === 'ev') p.events.push({ ...msg, rel: this.rel(msg.at) });
      else if (msg.t === 'reply') {
        replies.get(msg.rid)?.(msg.data);
        replies.delete(msg.rid);
      }
    });
    p.request = (type, data = {}, ms = this.cfg.requestMs) => {
      const id = rid++;
      const reply = new Promise((resolve) => replies.set(id, resolve));
      proc.stdin.write(`${JSON.stringify({ rid: id, type, ...data })}\n`);
      return within(ms, reply, `${p.key}: "${type}"`);
    };
    p.running = () => proc.exitCode === null && proc.signalCode === null;
    this.processes.push(p);
    try {
      p.id = await within(
        this.cfg.startMs,
        Promise.race([info, p.exited.then(() => Promise.reject(new Error(`${p.key} ended at start: ${p.stderr}`)))]),
        `${p.key}: start`,
      );
    } catch (err) {
      p.end = 'killed';
      proc.kill('SIGKILL');
      throw err;
    }
    p.startedRel = this.rel(Date.now());
    this.current.set(k, p);
    return p;
  }

  /** Plays one step; async ones (start, exit) are tracked in this.pending. */
  play(step) {
    const k = step.host;
    const p = k === undefined ? undefined : this.current.get(k);
    const note = (why) => this.notes.push(`+${step.at} ${step.op} h${k}: ${why}`);
    const track = (promise) => {
      const tracked = promise.catch((err) => note(err.message)).finally(() => this.pending.delete(tracked));
      this.pending.add(tracked);
    };
    switch (step.op) {
      case 'partition':
        for (const h of step.group) this.bed.moveToBridge(h, 'br1');
        break;
      case 'heal':
        for (const h of step.group) this.bed.moveToBridge(h, 'br0');
        break;
      case 'cut':
        this.bed.cutLink(k);
        break;
      case 'restore':
        this.bed.restoreLink(k);
        break;
      case 'kill':
        if (!p) return note('no process');
        p.end = 'killed';
        p.endedRel = this.rel(Date.now());
        this.current.delete(k);
        p.proc.kill('SIGKILL');
        break;
      case 'exit':
        if (!p) return note('no process');
        p.end = 'exited';
        p.endedRel = this.rel(Date.now());
        this.current.delete(k);
        track(
          (async () => {
            try {
              p.report = await p.request('exit', { ms: 1000 }, 5000);
            } finally {
              await within(3000, p.exited, `${p.key}: exit`).catch(() => p.proc.kill('SIGKILL'));
            }
          })(),
        );
        break;
      case 'start':
        if (this.current.has(k)) return note('a process is still running');
        track(
          (async () => {
            const previous = this.processes.filter((q) => q.host === k);
            await Promise.all(previous.map((q) => within(5000, q.exited, `${q.key}: end`).catch(() => q.proc.kill('SIGKILL'))));
            await this.start(k);
          })(),
        );
        break;
      case 'stop':
      case 'cont':
        if (!p) return note('no process');
        try {
          process.kill(p.proc.pid, step.op === 'stop' ? 'SIGSTOP' : 'SIGCONT');
          p.stopped = step.op === 'stop';
        } catch (err) {
          note(err.message);
        }
        break;
      case 'promote':
        if (!p) return note('no process');
        track(
          p.request('promote', {}, 3000).then((r) => {
            p.events.push({ ev: 'promote()', at: Date.now(), rel: this.rel(Date.now()), result: r });
          }),
        );
        break;
      default:
        throw new Error(`unknown step ${step.op}`);
    }
  }

  /** Every link up, every host on br0, every process running and not stopped. */
  async healAll() {
    for (let k = 1; k <= this.schedule.hosts; k++) {
      this.bed.moveToBridge(k, 'br0');
      this.bed.restoreLink(k);
    }
    for (const p of this.current.values()) if (p.running()) process.kill(p.proc.pid, 'SIGCONT');
    await within(15_000, Promise.allSettled([...this.pending]), 'restarts and exits under way');
    const down = [];
    for (let k = 1; k <= this.schedule.hosts; k++) if (!this.current.has(k)) down.push(k);
    await Promise.all(down.map((k) => this.start(k)));
  }

  live() {
    return [...this.current.values()];
  }

  /** One view of every live process. */
  async views() {
    this.assertAlive();
    return Promise.all(this.live().map(async (p) => ({ p, ...(await p.request('view', {}, 3000)) })));
  }

  /** A process that ended on its own (a crash of the node) fails the run, with its stderr. */
  assertAlive() {
    const dead = this.live().filter((p) => !p.running());
    if (dead.length > 0) {
      const what = dead.map((p) => `${p.key}(${short(p.id)}) ended on its own (${p.proc.exitCode ?? p.proc.signalCode}); stderr: ${p.stderr.slice(-2000)}`);
      throw new Error(what.join('\n'));
    }
  }

  /**
   * Polls until every live process sees exactly the others (membership) and all name one
   * master among them that alone says it is master, for `ms` from `start`; returns the times
   * (ms after `from`).
   */
  async converge(from, ms, start = from) {
    const deadline = start + ms;
    let membershipAt;
    let last;
    // At least one poll, however short `ms`.
    do {
      last = await this.views();
      const ids = last.map((v) => v.p.id);
      const sameSet = last.every((v) => v.nodes.slice().sort().join() === ids.filter((id) => id !== v.p.id).sort().join());
      if (sameSet && membershipAt === undefined) membershipAt = Date.now() - from;
      if (!sameSet) membershipAt = undefined;
      const masters = new Set(last.map((v) => v.master));
      const [master] = masters;
      const oneMaster =
        masters.size === 1 &&
        ids.includes(master) &&
        last.filter((v) => v.isMaster).map((v) => v.p.id).join() === master;
      if (sameSet && oneMaster) return { ok: true, membershipAt, masterAt: Date.now() - from, master, last };
      await delay(100);
    } while (Date.now() < deadline);
    return { ok: false, membershipAt, last };
  }

  describeViews(views) {
    const name = (id) => this.processes.find((q) => q.id === id)?.key ?? short(id);
    return views.map(
      (v) => `${v.p.key}(${short(v.p.id)}) sees [${v.nodes.map(name).join(' ')}] master ${v.master ? name(v.master) : 'none'}${v.isMaster ? ' (itself)' : ''}`,
    );
  }

  /** Reports of every live process until every live pair's resolved sends are accounted for, or drainMs. */
  async drain() {
    const deadline = Date.now() + this.cfg.drainMs;
    for (;;) {
      const live = this.live();
      await Promise.all(live.map(async (p) => (p.report = await p.request('report'))));
      const missing = live.some((s) => live.some((r) => s !== r && missingBetween(s, r).missing.length > 0));
      if (!missing || Date.now() > deadline) return;
      await delay(250);
    }
  }

  async run() {
    const { cfg, schedule } = this;
    const checks = [];
    const figures = {};
    this.bed = Testbed.create(schedule.hosts);
    try {
      await Promise.all(Array.from({ length: schedule.hosts }, (_, i) => this.start(i + 1)));
      const formed = await this.converge(Date.now(), 20_000);
      if (!formed.ok) {
        checks.push({ name: 'cluster formed before the faults', ok: false, details: this.describeViews(formed.last) });
        return { checks, figures };
      }
      this.t0 = Date.now();
      for (const p of this.processes) for (const e of p.events) e.rel = this.rel(e.at);
      for (const step of schedule.steps) {
        const wait = this.t0 + step.at - Date.now();
        if (wait > 0) await delay(wait);
        this.play(step);
      }
      // Convergence is timed from the end of the last fault; the bound runs from the final
      // heal (which also waits for restarts under way).
      const lastFault = Date.now();
      await this.healAll();
      figures.healMs = Date.now() - lastFault;
      const converged = await this.converge(lastFault, cfg.convergeMs, Date.now());
      checks.push({
        name: `membership converged within ${cfg.convergeMs} ms`,
        ok: converged.membershipAt !== undefined,
        details: converged.membershipAt === undefined ? this.describeViews(converged.last) : [],
      });
      checks.push({
        name: `one agreed master within ${cfg.convergeMs} ms`,
        ok: converged.ok,
        details: converged.ok ? [] : this.describeViews(converged.last),
      });
      figures.membershipMs = converged.membershipAt;
      figures.masterMs = converged.masterAt;
      if (converged.ok) {
        await delay(cfg.settleMs);
        const still = await this.converge(Date.now(), 0);
        checks.push({
          name: `still one cluster and master ${cfg.settleMs} ms later`,
          ok: still.ok && still.master === converged.master,
          details: still.ok && still.master === converged.master ? [] : this.describeViews(still.last),
        });
      }
      this.assertAlive();
      await Promise.all(this.live().map((p) => p.request('stop', { ms: cfg.drainMs / 2 }, cfg.drainMs)));
      await this.drain();
      for (const check of [checkEvents(this.processes), checkOrder(this.processes), checkDelivery(this.processes, Math.floor(cfg.settleMs / cfg.sendEveryMs / 4))]) checks.push(check);
      figures.processes = this.processes.length;
      return { checks, figures };
    } finally {
      for (const p of this.processes) {
        try {
          p.proc.stdin.end();
        } catch {
          // gone
        }
      }
      await this.bed.destroy();
    }
  }
}

/**
 * Runs `seed`; resolves with { seed, ok, checks, figures, schedule, notes }. A harness failure
 * (a process that would not start, a bound passed) is a failed check named "harness".
 */
async function runSeed(seed, cfg) {
  const run = new Run(seed, cfg);
  let result;
  try {
    result = await within(cfg.seedTimeoutMs, run.run(), `seed ${seed}`);
  } catch (err) {
    result = { checks: [{ name: 'harness', ok: false, details: [err.stack || err.message] }], figures: {} };
    try {
      await run.bed?.destroy();
    } catch {
      // already gone
    }
  }
  const ok = result.checks.every((c) => c.ok);
  const processes = run.processes.map((p) => `${p.key}=${short(p.id)} ${p.end}${p.endedRel !== undefined ? ` at +${p.endedRel}` : ''}`);
  // Every process's events, for a closer look at a seed (run.js --dump).
  const events = Object.fromEntries(run.processes.map((p) => [p.key, { id: p.id, end: p.end, events: p.events, stderr: p.stderr }]));
  return { seed, ok, ...result, schedule: run.schedule, describe: describe(run.schedule), notes: run.notes, processes, events };
}

module.exports = { runSeed };
