'use strict';

// How a seed's result is printed: one line per check; for a failing seed, what broke (the
// check, the nodes, the messages), the processes, the schedule and the command that replays it.

const { DEFAULTS, envName } = require('./config.js');

const MAX_DETAILS = 20;

function format(result, cfg) {
  const f = result.figures || {};
  const lines = [];
  const timing = f.membershipMs !== undefined ? `; after the last fault: membership ${f.membershipMs} ms, master ${f.masterMs ?? '-'} ms` : '';
  const traffic = result.checks.find((c) => c.name.startsWith('resolved'))?.figures;
  const sent = traffic ? `; ${traffic.resolved} resolved sends over ${traffic.pairs} live pairs, ${traffic.reported} reported undelivered` : '';
  lines.push(`seed ${result.seed}: ${result.ok ? 'PASS' : 'FAIL'} (${result.schedule.hosts} hosts, ${result.schedule.faults.length} faults, ${result.schedule.discovery}${timing}${sent})`);
  for (const c of result.checks) {
    lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}`);
    for (const n of (c.notes || []).slice(0, MAX_DETAILS)) lines.push(`         note: ${n}`);
    if (!c.ok) {
      for (const d of c.details.slice(0, MAX_DETAILS)) lines.push(`         ${d}`);
      if (c.details.length > MAX_DETAILS) lines.push(`         … ${c.details.length - MAX_DETAILS} more`);
    }
  }
  if (!result.ok) {
    lines.push(`  processes: ${result.processes.join('; ')}`);
    if (result.notes.length) lines.push(`  steps not played as drawn: ${result.notes.join('; ')}`);
    lines.push(result.describe.replace(/^/gm, '  '));
    // Whatever differs from the defaults (the CI's shorter fault phase, say) goes in the command.
    const env = Object.entries(cfg)
      .filter(([key, v]) => DEFAULTS[key] !== v)
      .map(([key, v]) => `${envName(key)}=${v} `)
      .join('');
    lines.push(`  replay: ${env}npm run test:faults -- --seeds ${result.seed}`);
  }
  return lines.join('\n');
}

module.exports = { format };
