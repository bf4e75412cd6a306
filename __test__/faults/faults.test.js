'use strict';

// The randomized fault test over a short fixed set of seeds (issue 15), part of `npm test`:
// 5-7 namespace hosts, one node each, ~50 numbered messages/s between every two of them,
// while partitions, link cuts, kill -9, exit() and restarts, promote() and SIGSTOP pauses
// happen as the seed says; then everything heals and the checks run (harness.js, checks.js).
// Longer runs: `npm run test:faults -- --seeds 1-40` (TESTING.md). A failure prints what broke
// and the schedule, and replays with `npm run test:faults -- --seeds <seed>`.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { requireNetns } = require('../netns/testbed.js');
const { config } = require('./config.js');
const { generate } = require('./schedule.js');
const { runSeed } = require('./harness.js');
const { format } = require('./report.js');

// Chosen so that together they draw every kind of fault (checked below), both discoveries
// and 5, 6 and 7 hosts; about 40 s each.
const CI_SEEDS = [1, 3, 5];
const cfg = config({ faultPhaseMs: Number(process.env.ESPIAL_FAULTS_FAULT_PHASE_MS) || 20_000 });

test('the CI seeds draw every kind of fault', () => {
  const kinds = new Set(CI_SEEDS.flatMap((seed) => generate(seed, { phaseMs: cfg.faultPhaseMs, startMs: cfg.faultStartMs }).faults.map((f) => f.kind)));
  assert.deepEqual([...kinds].sort(), ['cut', 'exit', 'kill', 'partition', 'pause', 'promote']);
});

for (const seed of CI_SEEDS) {
  test(`fault schedule of seed ${seed}: membership, one master, alternating events, exactly-once in-order delivery`, { timeout: cfg.seedTimeoutMs + 30_000 }, async (t) => {
    if (!requireNetns(t)) return;
    const result = await runSeed(seed, cfg);
    const text = format(result, cfg);
    t.diagnostic(text.split('\n')[0]);
    assert.ok(result.ok, text);
  });
}
