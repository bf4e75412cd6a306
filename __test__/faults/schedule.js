'use strict';

// The fault schedule: a pure function of the seed (and of the fault phase's length), so that a
// failing seed replays the same faults at the same offsets. Nothing here reads a clock or
// Math.random.
//
// A schedule is { seed, hosts, discovery, faults, steps }:
//   hosts      5 to 7 namespace hosts, numbered 1..hosts
//   discovery  'multicast' (beacons on the hosts' own interfaces, inside the bridge namespace)
//              or 'seeds' (multicast off, every other host's address as a seed)
//   faults     what was drawn, for people: { at, kind, host | group, ms }
//   steps      what the runner does, in time order: { at, op, host | group }, op one of
//              partition/heal (group to br1 and back), cut/restore (host's bridge port down
//              and up), kill/exit (kill -9 / graceful exit(), without restart), start (a new
//              process: a new id), stop/cont (SIGSTOP / SIGCONT), promote.

// mulberry32: small, fast, and the same everywhere.
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), // lo..hi inclusive
    pick: (list) => list[Math.floor(next() * list.length)],
  };
}

// Relative weights of the fault kinds.
const KINDS = [
  ['partition', 2],
  ['cut', 3],
  ['kill', 2],
  ['exit', 2],
  ['promote', 2],
  ['pause', 3],
];

function drawKind(r) {
  const total = KINDS.reduce((sum, [, w]) => sum + w, 0);
  let x = r.next() * total;
  for (const [kind, w] of KINDS) {
    x -= w;
    if (x < 0) return kind;
  }
  return KINDS[KINDS.length - 1][0];
}

/**
 * The schedule of `seed` (a non-negative integer) for a fault phase from `startMs` to about
 * `phaseMs` (faults start before phaseMs; the last ones may end up to 8 s after it).
 */
function generate(seed, { phaseMs, startMs }) {
  if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`seed ${seed}: a non-negative integer`);
  const r = rng(seed * 2654435761 + 1);
  const hosts = r.int(5, 7);
  const discovery = r.next() < 0.5 ? 'multicast' : 'seeds';
  const all = Array.from({ length: hosts }, (_, i) => i + 1);
  // Until when each host is taken by a fault of its own (pause, cut, restart), and until when
  // links are taken by a partition (so cuts and partitions never undo each other).
  const busy = new Map(all.map((k) => [k, 0]));
  let linksBusy = 0;
  const cutUntil = new Map(all.map((k) => [k, 0]));
  const faults = [];
  const steps = [];
  const step = (at, op, target) => steps.push({ at, op, ...target });

  let t = startMs;
  for (let tries = 0; t < phaseMs && tries < 200; tries++) {
    const kind = drawKind(r);
    const free = all.filter((k) => busy.get(k) <= t);
    if (kind === 'partition') {
      if (linksBusy > t || all.some((k) => cutUntil.get(k) > t)) continue;
      const size = r.int(1, Math.floor(hosts / 2));
      const shuffled = all.map((k) => [r.next(), k]).sort((a, b) => a[0] - b[0]).map(([, k]) => k);
      const group = shuffled.slice(0, size).sort((a, b) => a - b);
      const ms = r.int(1_000, 6_000);
      faults.push({ at: t, kind, group, ms });
      step(t, 'partition', { group });
      step(t + ms, 'heal', { group });
      linksBusy = t + ms + 200;
    } else if (kind === 'cut') {
      const candidates = free.filter((k) => cutUntil.get(k) <= t);
      if (linksBusy > t || candidates.length === 0) continue;
      const host = r.pick(candidates);
      const ms = r.int(500, 3_000);
      faults.push({ at: t, kind, host, ms });
      step(t, 'cut', { host });
      step(t + ms, 'restore', { host });
      cutUntil.set(host, t + ms + 200);
      busy.set(host, t + ms + 200);
    } else if (kind === 'kill' || kind === 'exit') {
      if (free.length === 0) continue;
      const host = r.pick(free);
      const ms = r.int(300, 2_000); // down time before the new process starts
      faults.push({ at: t, kind, host, ms });
      step(t, kind, { host });
      step(t + ms, 'start', { host });
      busy.set(host, t + ms + 2_000); // room for the new process to start
    } else if (kind === 'pause') {
      if (free.length === 0) continue;
      const host = r.pick(free);
      const ms = r.int(1_000, 8_000);
      faults.push({ at: t, kind, host, ms });
      step(t, 'stop', { host });
      step(t + ms, 'cont', { host });
      busy.set(host, t + ms + 200);
    } else if (kind === 'promote') {
      if (free.length === 0) continue;
      const host = r.pick(free);
      faults.push({ at: t, kind, host });
      step(t, 'promote', { host });
    }
    t += r.int(300, 3_000);
  }
  steps.sort((a, b) => a.at - b.at);
  return { seed, hosts, discovery, faults, steps };
}

/** One line per fault, for the report of a failing seed. */
function describe(schedule) {
  const lines = [`seed ${schedule.seed}: ${schedule.hosts} hosts, discovery by ${schedule.discovery}`];
  for (const f of schedule.faults) {
    const who = f.group ? `hosts ${f.group.join(',')} | the rest` : `h${f.host}`;
    const what = {
      partition: `partition ${who} for ${f.ms} ms`,
      cut: `link cut of ${who} for ${f.ms} ms`,
      kill: `kill -9 ${who}, restart after ${f.ms} ms (new id)`,
      exit: `exit() ${who}, restart after ${f.ms} ms (new id)`,
      pause: `SIGSTOP ${who} for ${f.ms} ms, then SIGCONT`,
      promote: `promote() on ${who}`,
    }[f.kind];
    lines.push(`  +${String(f.at).padStart(6)} ms  ${what}`);
  }
  return lines.join('\n');
}

/** "3", "1-40", "1,5,9" or "1-3,7" → [seeds]. */
function parseSeeds(text) {
  const seeds = [];
  for (const part of String(text).split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new RangeError(`seeds "${text}": write 7, 1-40 or 1,5,9`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo || hi - lo > 100_000) throw new RangeError(`seeds "${part}": an empty or huge range`);
    for (let s = lo; s <= hi; s++) seeds.push(s);
  }
  return seeds;
}

module.exports = { generate, describe, parseSeeds, rng };
