'use strict';

// Memory bounded end to end (issue 14): a fast sender awaiting its sends against a receiver
// whose event loop is blocked for 10 s. The receiver stops reading once max_receive_buffer
// (4 MiB by default) waits for its JavaScript, so TCP's window fills and the sender's
// send() waits; nothing is lost, its RSS stays within the bound plus a constant, and
// neither node removes the other, although each would take 4 s of silence for death
// (send_presence_frequency 1000). Two processes (fixtures/flood-child.js) on 127.0.0.1.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { fork } = require('node:child_process');
const { randomPorts, uniqueCluster, manualOptions, within } = require('./support.js');

const CHILD = path.join(__dirname, 'fixtures', 'flood-child.js');
const BLOCK_MS = 10_000;
const SIZE = 1024;
// 80 MiB: far more than the receiver's bound, the kernel's buffers on both ends (a few MiB
// each) and the sender's write queue (8 MiB) hold together, so the sender must wait.
const TOTAL = 80_000;
const BOUND = 4 * 1024 * 1024; // max_receive_buffer's default
// What RSS may grow by beyond the bound while blocked: allocator slack around the buffered
// batches, the readers' buffers and a partly read frame per connection. Without the bound the
// receiver would hold all 80 MiB (and more: each message is an allocation of its own).
const RSS_SLACK = 16 * 1024 * 1024;

function child(role, options) {
  const proc = fork(CHILD, [role, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let output = '';
  proc.stdout.setEncoding('utf8').on('data', (t) => (output += t));
  proc.stderr.setEncoding('utf8').on('data', (t) => (output += t));
  const messages = [];
  const waiters = new Set();
  proc.on('message', (msg) => {
    messages.push(msg);
    for (const w of [...waiters]) w();
  });
  return {
    proc,
    messages,
    output: () => output,
    // The first message of `type` (already seen or to come) for which `accept` holds.
    next(type, ms, accept = () => true) {
      const find = () => messages.find((m) => m.type === type && accept(m));
      return within(
        ms,
        new Promise((resolve) => {
          const check = () => {
            const found = find();
            if (found) {
              waiters.delete(check);
              resolve(found);
            }
          };
          waiters.add(check);
          check();
        }),
        () => `${role}: no "${type}" within ${ms} ms; output: ${output}`,
      );
    },
    send: (msg) => proc.send(msg),
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.send({ type: 'exit' });
      const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function rssOf(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024;
}

test('a fast sender against a receiver blocked for 10 s: nothing lost, memory bounded, sends waiting, nobody removed', async () => {
  const [receiverPort, senderPort] = randomPorts(2);
  const cluster = uniqueCluster();
  const common = { cluster, send_presence_frequency: 1000 };
  const receiver = child('receiver', manualOptions({ port: receiverPort, ...common }));
  const sender = child('sender', manualOptions({ port: senderPort, peers: [`127.0.0.1:${receiverPort}`], ...common }));
  const samples = []; // { at, rss } of the receiver, every 100 ms
  let sampler;
  try {
    const { id: receiverId } = await receiver.next('listening', 10_000);
    await sender.next('listening', 10_000);
    // The receiver's joins have reached the sender once a `warm` message arrives.
    sender.send({ type: 'warm', to: receiverId });
    await receiver.next('warm', 10_000);
    sampler = setInterval(() => samples.push({ at: Date.now(), rss: rssOf(receiver.proc.pid) }), 100);
    await new Promise((resolve) => setTimeout(resolve, 300));

    receiver.send({ type: 'block', ms: BLOCK_MS });
    sender.send({ type: 'flood', to: receiverId, total: TOTAL, size: SIZE });
    const { start, end } = await receiver.next('unblocked', BLOCK_MS + 10_000);
    const sent = await sender.next('sent', 20_000);
    assert.equal(sent.resolved, TOTAL);
    const done = await receiver.next('flood', 20_000, (m) => m.count >= TOTAL);
    clearInterval(sampler);

    // Every numbered message once, in order; and no more arrive later.
    assert.equal(done.bad, null, `out of order or repeated: ${JSON.stringify(done.bad)}`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    receiver.send({ type: 'count' });
    const last = await receiver.next('flood', 2000, (m) => m.count >= TOTAL && m !== done);
    assert.equal(last.count, TOTAL);

    // The receiver's RSS while blocked: within the bound plus the stated slack, above what
    // it was just before.
    const before = samples.filter((s) => s.at < start).at(-1);
    const during = samples.filter((s) => s.at > start && s.at < end);
    assert.ok(before && during.length > 50, `RSS sampled before and during the block (${during.length} samples)`);
    const peak = Math.max(...during.map((s) => s.rss));
    const grown = peak - before.rss;
    assert.ok(
      grown <= BOUND + RSS_SLACK,
      `receiver RSS grew by ${(grown / 2 ** 20).toFixed(1)} MiB while blocked (from ${(before.rss / 2 ** 20).toFixed(1)} MiB), over ${((BOUND + RSS_SLACK) / 2 ** 20).toFixed(0)} MiB`,
    );

    // The sender's sends waited: in the last 5 s of the block none resolved, and far from
    // all had by its end.
    const progress = sender.messages.filter((m) => m.type === 'progress');
    const resolvedAt = (t) => progress.filter((m) => m.at <= t).at(-1)?.resolved ?? 0;
    const atHalf = resolvedAt(end - 5000);
    const atEnd = resolvedAt(end - 100);
    assert.ok(atEnd > 0, 'the sender sent before the receiver fell behind');
    assert.equal(atEnd, atHalf, `sends resolved in the last 5 s of the block: ${atHalf} then ${atEnd}`);
    assert.ok(atEnd < TOTAL / 2, `${atEnd} of ${TOTAL} sends resolved while the receiver was blocked`);

    // Nobody was taken for dead; nothing went wrong.
    for (const [name, c] of [['receiver', receiver], ['sender', sender]]) {
      const bad = c.messages.filter((m) => m.type === 'removed' || m.type === 'error');
      assert.deepEqual(bad, [], `${name}: ${JSON.stringify(bad)}`);
    }
    console.log(
      `# blocked ${end - start} ms; receiver RSS ${(before.rss / 2 ** 20).toFixed(1)} MiB before, +${(grown / 2 ** 20).toFixed(1)} MiB at most while blocked; sender resolved ${atEnd} of ${TOTAL} sends by then`,
    );
  } finally {
    clearInterval(sampler);
    await Promise.all([receiver.stop(), sender.stop()]);
  }
});
