'use strict';

// [slow, ~3 s] The prebuilt install check: scripts/pack/check.js checks that the built addon
// needs no glibc newer than 2.17 (its symbol versions), packs the main package and
// the linux-x64-gnu package, installs both into an empty directory without cargo or rustc
// on PATH, and runs a two-node cluster (127.0.0.1) from there. Skipped on other platforms
// or when the addon is not built.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');

const CHECK = path.join(__dirname, '..', 'scripts', 'pack', 'check.js');
const TIMEOUT_MS = 55_000;

test('[slow] the packed tarballs install without a Rust toolchain and form a cluster', { timeout: TIMEOUT_MS + 5000 }, async (t) => {
  const result = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHECK], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (text) => (output += text));
    child.stderr.setEncoding('utf8').on('data', (text) => (output += text));
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
  if (result.code === 77) {
    t.skip(result.output.trim());
    return;
  }
  assert.equal(result.code, 0, result.output);
  assert.match(result.output, /symbol versions within the floor \(GLIBC_2\.17, .*needs at most GLIBC_2\.1\d\b/);
  assert.match(result.output, /two nodes formed a cluster from the installed packages/);
  assert.match(result.output, /addon loaded from node_modules\/espial-linux-x64-gnu/);
  assert.match(result.output, /no cargo or rustc on PATH/);
});
