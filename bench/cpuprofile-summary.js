'use strict';

// Summarises V8 .cpuprofile files (node --cpu-prof): self time by function and by where the
// code lives. Usage: node bench/cpuprofile-summary.js FILE.cpuprofile [top N]

const fs = require('node:fs');
const path = require('node:path');

const file = process.argv[2];
const top = Number(process.argv[3] ?? 25);
const profile = JSON.parse(fs.readFileSync(file, 'utf8'));

// Self samples per node id, from the sample list and the time deltas.
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i];
  const dt = profile.timeDeltas[i] ?? 0;
  self.set(id, (self.get(id) ?? 0) + dt);
}
const total = [...self.values()].reduce((a, b) => a + b, 0);

function category(frame) {
  const url = frame.url || '';
  const name = frame.functionName;
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)') return 'native (addon threads excluded; napi, libuv, V8 runtime)';
  if (url.includes('/bench/')) return 'benchmark harness';
  if (url.endsWith('/index.js') && !url.includes('node_modules')) return 'espial index.js';
  if (url.includes('/lib/')) return 'espial lib/';
  if (url.includes('binding.js')) return 'binding.js';
  if (url.startsWith('node:')) return 'Node.js internals';
  if (url === '') return `native/builtin (${name || 'anonymous'})`;
  return path.basename(url);
}

const byFn = new Map();
const byCat = new Map();
for (const [id, us] of self) {
  const n = byId.get(id);
  const f = n.callFrame;
  const key = `${f.functionName || '(anonymous)'} ${f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : ''}`;
  byFn.set(key, (byFn.get(key) ?? 0) + us);
  const cat = category(f);
  byCat.set(cat, (byCat.get(cat) ?? 0) + us);
}

const pct = (us) => `${((us / total) * 100).toFixed(1).padStart(5)} %`;
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled on the main thread`);
console.log('\nby category (self time):');
for (const [k, v] of [...byCat].sort((a, b) => b[1] - a[1])) console.log(`  ${pct(v)}  ${k}`);
console.log(`\ntop ${top} functions (self time):`);
for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v)}  ${k}`);
