'use strict';

// Every example in examples/ runs to its end on 127.0.0.1 and exits 0 within its bound.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const EXAMPLES = path.join(__dirname, '..', 'examples');

function runExample(file, ms) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(EXAMPLES, file)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (text) => (output += text));
    child.stderr.setEncoding('utf8').on('data', (text) => (output += text));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

test('examples/hostname-filter.js: only org.internal hosts form a cluster', { timeout: 30_000 }, async () => {
  const result = await runExample('hostname-filter.js', 25_000);
  assert.equal(result.code, 0, result.output);
  assert.match(result.output, /laptop\.example\.com: rejected by web1\.org\.internal/);
  assert.match(result.output, /laptop\.example\.com: rejected by db1\.org\.internal/);
  assert.match(result.output, /laptop sees \[\]/);
  assert.match(result.output, /only the org\.internal nodes formed a cluster/);
});

test('examples/job-queue.js: the master hands out every job, across a failover', { timeout: 35_000 }, async () => {
  const result = await runExample('job-queue.js', 30_000);
  assert.equal(result.code, 0, result.output);
  assert.match(result.output, /disp-1 +is master now/);
  assert.match(result.output, /disp-1 +leaves, having handed out [1-9]\d* jobs/);
  assert.match(result.output, /disp-2 +is master now \(after disp-1\)/);
  assert.match(result.output, /all 12 done: 1 4 9 16 25 36 49 64 81 100 121 144/);
});

const haveTsc = fs.existsSync(path.join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc'));

test('examples/typescript: compiles and runs', { skip: haveTsc ? false : 'typescript is not installed', timeout: 65_000 }, async () => {
  const result = await runExample(path.join('typescript', 'run.js'), 60_000);
  assert.equal(result.code, 0, result.output);
  assert.match(result.output, /price of a1: 12\.5 EUR/);
});

test('every example in examples/ is run by this file', () => {
  const listed = ['hostname-filter.js', 'job-queue.js', 'typescript'];
  assert.deepEqual(fs.readdirSync(EXAMPLES).sort(), listed.sort());
});
