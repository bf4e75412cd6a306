'use strict';

// The wire: everything crossing the test bed's bridges is captured (scripts/netns/capture.py,
// an AF_PACKET socket in the bridge namespace) while nodes exchange metadata, a metadata
// update and custom events carrying random markers. No marker may appear anywhere in the
// captured bytes. Controls: the capture did see the nodes' TCP traffic, and it does see a
// marker that is sent in the clear.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { withTestbed } = require('./testbed.js');
const { hostOptions, uniqueSetup, converge } = require('./helpers.js');
const { byId, within, delay } = require('../support.js');

const CAPTURE = path.join(__dirname, '..', '..', 'scripts', 'netns', 'capture.py');

// Starts a capture in the bridge namespace; resolves once it is ready with
// { stop(): Promise<stats> } (stats as capture.py prints them).
async function startCapture(bed, file) {
  const proc = bed.spawnIn(bed.bridgeNs, ['python3', CAPTURE, file, '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (text) => (stderr += text));
  const lines = [];
  let wake = () => {};
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    lines.push(line);
    wake();
  });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const line = (n, what) =>
    within(10_000, new Promise((resolve, reject) => {
      const check = () => {
        if (lines.length > n) resolve(lines[n]);
        else if (proc.exitCode !== null) reject(new Error(`capture ended: ${stderr}`));
      };
      wake = check;
      proc.once('exit', check);
      check();
    }), () => `capture: no ${what} within 10 s; stderr: ${stderr}`);
  assert.equal(await line(0, 'ready line'), 'ready');
  return {
    async stop() {
      proc.kill('SIGTERM');
      const stats = JSON.parse(await line(1, 'statistics'));
      await within(10_000, exited, () => 'capture did not end');
      return stats;
    },
  };
}

// Sends `text` once in the clear, by UDP from host `from` to host `to`.
async function sendClear(bed, from, to, text) {
  const script = `const s=require('dgram').createSocket('udp4');s.send(${JSON.stringify(text)},9,${JSON.stringify(bed.addr(to))},()=>s.close())`;
  const proc = bed.spawnIn(bed.ns(from), [process.execPath, '-e', script], { stdio: 'ignore' });
  await within(10_000, new Promise((resolve) => proc.once('exit', resolve)), () => 'clear-text sender did not end');
}

test('no metadata, metadata update or event payload crosses the wire in the clear', async (t) => {
  await withTestbed(t, 3, async (bed) => {
    const marker = () => crypto.randomBytes(8).toString('hex');
    const markers = {
      metadata: marker(),
      update: marker(),
      jsonEvent: marker(),
      binaryEvent: marker(),
      directEvent: marker(),
      control: marker(),
    };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'espial-wire-'));
    const file = path.join(dir, 'bridge.pcap');
    try {
      const capture = await startCapture(bed, file);
      let stats;
      try {
        const setup = uniqueSetup();
        const nodes = await Promise.all(
          [1, 2, 3].map((k) =>
            bed.runNode(k, hostOptions(bed, k, { ...setup, metadata: { marker: markers.metadata, host: k } })),
          ),
        );
        await converge(nodes, 'three hosts');
        const [a, b, c] = nodes;

        // A metadata update, seen by the others.
        const updated = [b, c].map((n) =>
          n.events.next('updated_node', `${n.name}: updated_node for h1`, (node) => node?.metadata?.marker === markers.update),
        );
        await a.request('set_metadata', { metadata: { marker: markers.update } });
        await Promise.all(updated);

        // Custom events: JSON to everyone who joined, a Buffer, and one to a single target.
        for (const n of [b, c]) assert.equal(await n.request('join', { event: 'secret' }), true);
        await delay(300); // the joins reach a
        assert.deepEqual(await a.request('send', { event: 'secret', data: { marker: markers.jsonEvent } }), { ok: true });
        const binary = { type: 'Buffer', data: [...Buffer.from(markers.binaryEvent)] };
        assert.deepEqual(await a.request('send', { event: 'secret', data: binary }), { ok: true });
        assert.deepEqual(
          await a.request('send', { event: 'secret', data: markers.directEvent, targets: b.node.id }),
          { ok: true },
        );
        for (const n of [b, c]) {
          await n.events.next('secret', `${n.name}: the JSON event`, (d) => d?.marker === markers.jsonEvent);
          const hex = Buffer.from(markers.binaryEvent).toString('hex');
          await n.events.next('secret', `${n.name}: the binary event`, (d) => d?.buffer === hex);
        }
        await b.events.next('secret', 'b: the direct event', (d) => d === markers.directEvent);
        await delay(200);
        for (const n of nodes) n.events.assertNoErrors();

        // Control: a marker sent in the clear is captured.
        await sendClear(bed, 1, 2, `control ${markers.control}`);
        await delay(300);
      } finally {
        stats = await capture.stop();
      }
      const bytes = fs.readFileSync(file);
      t.diagnostic(`captured ${stats.frames} frames, ${bytes.length} bytes: ${JSON.stringify(stats)}`);

      assert.ok(bytes.includes(markers.control), 'the control marker, sent in the clear, was captured');
      assert.ok(stats.tcp_between_hosts >= 20, `TCP segments with data between hosts: ${stats.tcp_between_hosts}`);
      assert.ok(stats.tcp_payload_bytes >= 2000, `TCP payload bytes: ${stats.tcp_payload_bytes}`);
      assert.ok(stats.udp >= 3, `UDP datagrams (beacons): ${stats.udp}`);
      for (const [what, m] of Object.entries(markers)) {
        if (what === 'control') continue;
        for (const form of [Buffer.from(m), Buffer.from(m, 'hex'), Buffer.from(m.toUpperCase())]) {
          assert.equal(bytes.indexOf(form), -1, `the ${what} marker (${form.toString('hex')}) crossed the wire in the clear`);
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
