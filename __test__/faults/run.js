#!/usr/bin/env node
'use strict';

// The randomized fault test, for long runs (needs root and iproute2; run it inside a throwaway
// network namespace, as TESTING.md shows):
//
//   npm run test:faults -- --seeds 1-40      (also --seeds 7, or --seeds 1,5,9-12)
//
// Each seed is one schedule (schedule.js, a pure function of the seed): its faults are
// printed with every failure, and `--seeds <that seed>` plays the same schedule again.
// `--dump DIR` also writes each seed's result, with every process's events, to DIR/seed-N.json.
// Timing bounds come from config.js (environment overrides: ESPIAL_FAULTS_*). Exits 1 if a
// seed fails.

const fs = require('node:fs');
const path = require('node:path');
const { config } = require('./config.js');
const { parseSeeds } = require('./schedule.js');
const { runSeed } = require('./harness.js');
const { format } = require('./report.js');

function usage(message) {
  if (message) console.error(message);
  console.error('usage: node __test__/faults/run.js --seeds A-B | --seeds N | --seeds A,B,C [--dump DIR]');
  process.exit(2);
}

async function main() {
  const args = process.argv.slice(2);
  let seeds;
  let dump;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--seeds') seeds = args[++i];
    else if (args[i] === '--dump') dump = args[++i];
    else if (args[i].startsWith('--seeds=')) seeds = args[i].slice('--seeds='.length);
    else usage(`unknown argument ${args[i]}`);
  }
  if (seeds === undefined) usage('--seeds is required');
  let list;
  try {
    list = parseSeeds(seeds);
  } catch (err) {
    usage(err.message);
  }
  const cfg = config();
  console.log(`fault test: seeds ${seeds} (${list.length}); config ${JSON.stringify(cfg)}`);
  const failed = [];
  const times = [];
  let resolved = 0;
  let reported = 0;
  for (const seed of list) {
    const result = await runSeed(seed, cfg);
    if (result.figures?.masterMs !== undefined) times.push(result.figures.masterMs);
    const traffic = result.checks.find((c) => c.figures?.resolved !== undefined)?.figures;
    resolved += traffic?.resolved ?? 0;
    reported += traffic?.reported ?? 0;
    console.log(format(result, cfg));
    if (dump) {
      fs.mkdirSync(dump, { recursive: true });
      fs.writeFileSync(path.join(dump, `seed-${seed}.json`), JSON.stringify(result, null, 1));
    }
    if (!result.ok) failed.push(seed);
  }
  times.sort((a, b) => a - b);
  const median = times.length ? times[Math.floor((times.length - 1) / 2)] : '-';
  console.log(`\n${list.length - failed.length} of ${list.length} seeds passed${failed.length ? `; failed: ${failed.join(',')}` : ''}`);
  console.log(
    `one membership and master after the last fault: median ${median} ms, worst ${times.at(-1) ?? '-'} ms; ` +
      `${resolved} resolved sends between live nodes checked, ${reported} reported undelivered`,
  );
  process.exit(failed.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
