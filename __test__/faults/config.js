'use strict';

// Every timing bound and rate of the fault test, in one place, so that they can be tightened
// once the failure detector's rewrite lands (removal within 2.5 s with defaults). Each can be
// overridden from the environment (ESPIAL_FAULTS_<NAME in upper snake case>, milliseconds),
// e.g. ESPIAL_FAULTS_CONVERGE_MS=5000; run.js prints the values it ran with.

const DEFAULTS = {
  // The nodes' heartbeat interval: a node silent for 3 of them + 1 s is removed. 300 is the
  // library's default (1.9 s of silence), so the faults meet the detector users get.
  presenceMs: 300,
  // Length of the fault phase: faults start from faultStartMs until about faultPhaseMs.
  faultPhaseMs: 30_000,
  faultStartMs: 2_000,
  // Traffic: each node sends one numbered message to each other node every sendEveryMs,
  // awaiting each send() (~50/s per pair).
  sendEveryMs: 20,
  // After the final heal, every live node must see exactly the live set and one agreed master
  // within convergeMs (the issue measured a median of 0.9 s and a worst case of 3.3 s; with
  // the per-pair sessions, sticky mastership and UDP probes, seeds 1-50 a worst case of 2.2 s).
  convergeMs: 5_000,
  // Traffic keeps flowing this long after convergence, so that every stream crosses a healthy
  // cluster before it stops.
  settleMs: 3_000,
  // Once traffic stops: how long sends still pending may take to settle, and how long what
  // resolved may take to arrive.
  drainMs: 10_000,
  // Bounds on single operations of the harness: a node starting, a request, exit().
  startMs: 10_000,
  requestMs: 10_000,
  // Hard bound on one seed, whatever happens.
  seedTimeoutMs: 180_000,
};

function envName(key) {
  return `ESPIAL_FAULTS_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** The configuration: DEFAULTS, then the environment, then `overrides`. */
function config(overrides = {}) {
  const out = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    const raw = process.env[envName(key)];
    if (raw !== undefined && raw !== '') {
      const value = Number(raw);
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`${envName(key)}=${raw}: not a number of ms`);
      out[key] = value;
    }
  }
  return { ...out, ...overrides };
}

module.exports = { DEFAULTS, config, envName };
