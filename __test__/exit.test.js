'use strict';

// A node keeps its process alive like a listening server, and after exit() it lets the
// process end by itself. Each case runs in a child process so that this is observable.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { WAIT_MS, randomPorts, uniqueCluster } = require('./support.js');

const CHILD = path.join(__dirname, 'fixtures', 'exit-child.js');

function startChild(mode) {
  const [port, multicastPort] = randomPorts(2);
  const child = spawn(process.execPath, [CHILD, mode, String(port), String(multicastPort), uniqueCluster()], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text) => (stderr += text));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const output = () => `stdout: ${JSON.stringify(stdout)}, stderr: ${JSON.stringify(stderr)}`;
  const listening = new Promise((resolve, reject) => {
    child.stdout.on('data', () => stdout.includes('listening\n') && resolve());
    exited.then(() => reject(new Error(`the child ended before listening; ${output()}`)));
  });
  return { child, exited, listening, output };
}

// Resolves with `promise`'s value, or rejects with `message` after `ms`.
function within(ms, promise, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('a process running a node ends by itself after exit()', async () => {
  const { child, exited, listening, output } = startChild('exit');
  try {
    await within(WAIT_MS, listening, () => `the child did not print "listening" within ${WAIT_MS} ms; ${output()}`);
    const { code, signal } = await within(
      WAIT_MS,
      exited,
      () => `the child was still running ${WAIT_MS} ms after exit(); ${output()}`,
    );
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, output());
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

test('a running node keeps its process alive', async () => {
  const { child, exited, listening, output } = startChild('stay');
  try {
    await within(WAIT_MS, listening, () => `the child did not print "listening" within ${WAIT_MS} ms; ${output()}`);
    await delay(1500);
    assert.equal(child.exitCode, null, `the child ended on its own; ${output()}`);
    assert.equal(child.signalCode, null, `the child was killed; ${output()}`);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
});

test('exit() right after the constructor never starts the node, and the process ends', async () => {
  const { child, exited, listening, output } = startChild('exit-at-once');
  listening.catch(() => {}); // this child never listens: that rejection is expected
  try {
    const { code, signal } = await within(
      WAIT_MS,
      exited,
      () => `the child was still running ${WAIT_MS} ms after exit(); ${output()}`,
    );
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, output());
    assert.match(output(), /exited/);
    assert.doesNotMatch(output(), /listening/);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

// The addon hands events to JavaScript through a libuv handle of its own (src/binding/
// delivery.rs), which must be closed before a worker's event loop is, or Node aborts.
test('a node in a worker thread terminated while it runs lets the process end', async () => {
  const { child, exited, listening, output } = startChild('worker');
  try {
    await within(WAIT_MS, listening, () => `the worker's node did not print "listening" within ${WAIT_MS} ms; ${output()}`);
    const { code, signal } = await within(
      WAIT_MS,
      exited,
      () => `the child was still running ${WAIT_MS} ms after its worker was terminated; ${output()}`,
    );
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, output());
    assert.match(output(), /terminated/);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

// Connections are read on the event loop of the thread that made the node too, through
// libuv poll handles on duplicates of their descriptors (src/binding/readpoll.rs): a worker
// terminated in the middle of a ping-pong between two of its members must close them before
// its loop is closed, and the process must end.
test('a worker terminated while two of its members exchange events lets the process end', async () => {
  const { child, exited, listening, output } = startChild('worker-pair');
  try {
    await within(WAIT_MS, listening, () => `the worker's members did not exchange 20 events within ${WAIT_MS} ms; ${output()}`);
    const { code, signal } = await within(
      WAIT_MS,
      exited,
      () => `the child was still running ${WAIT_MS} ms after its worker was terminated; ${output()}`,
    );
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, output());
    assert.match(output(), /terminated/);
    assert.doesNotMatch(output(), /Assertion|error:/);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});
