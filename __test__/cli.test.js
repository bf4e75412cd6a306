'use strict';

// The espial CLI (bin/espial.js) against real nodes on 127.0.0.1: `members` lists them,
// `watch` sees a node join, `node` runs one, `--help` works, bad arguments exit 2.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { randomPorts, uniqueCluster, loopbackOptions, manualOptions, withNodes, WAIT_MS } = require('./support.js');

const CLI = path.join(__dirname, '..', 'bin', 'espial.js');

// Runs the CLI; resolves with { code, signal, stdout, stderr }. Killed after `ms`.
// `onStdout(text, child)` sees the output so far, as it comes.
function cli(args, { ms = WAIT_MS, onStdout } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text) => {
      stdout += text;
      onStdout?.(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (text) => (stderr += text));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// The flags that put a CLI node in the test's cluster on loopback.
function flags(multicastPort, cluster) {
  return ['--interface', '127.0.0.1', '--multicast-port', String(multicastPort), '--cluster', cluster];
}

test('espial --help and each command --help print usage and exit 0', async () => {
  const top = await cli(['--help']);
  assert.equal(top.code, 0);
  for (const command of ['members', 'watch', 'node']) assert.match(top.stdout, new RegExp(`espial ${command}`));
  for (const command of ['members', 'watch', 'node']) {
    const own = await cli([command, '--help']);
    assert.equal(own.code, 0, own.stderr);
    assert.match(own.stdout, new RegExp(`^Usage: espial ${command}`));
    assert.match(own.stdout, /--interface/);
  }
  assert.match((await cli(['members', '--help'])).stdout, /--wait <ms>/);
  assert.match((await cli(['node', '--help'])).stdout, /--metadata <json>/);
  assert.match((await cli(['watch', '--help'])).stdout, /--duration <s>/);
  const version = await cli(['--version']);
  assert.equal(version.stdout.trim(), require('../package.json').version);
});

test('bad arguments exit 2 with a message that names them', async () => {
  const cases = [
    [[], /no command/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['members', '--prot', '1'], /Unknown option '--prot'/],
    [['members', '--port'], /--port/],
    [['members', '--port', '70000'], /--port must be a whole number from 1 to 65535/],
    [['members', '--wait', 'soon'], /--wait must be/],
    [['watch', '--duration', '-1'], /--duration/],
    [['node', '--metadata', '{not json'], /--metadata is not valid JSON/],
    [['node', '--metadata', '[1,2]'], /--metadata must be a JSON object/],
    [['members', '--interface', '10.0.0.256'], /network\.address\.local.*\(--interface\)/],
    [['members', '--peers', 'nohost'], /network\.peers.*\(--peers\)/],
    [['members', '--cluster-key', 'short'], /cluster_key.*\(--cluster-key\)/],
    [['members', 'extra'], /Unexpected argument 'extra'/],
  ];
  for (const [args, message] of cases) {
    const result = await cli(args);
    assert.equal(result.code, 2, `${args.join(' ')}: exit ${result.code}, ${result.stderr}`);
    assert.match(result.stderr, message, args.join(' '));
    assert.match(result.stderr, /--help/, args.join(' '));
    assert.equal(result.stdout, '', args.join(' '));
  }
});

test('espial members prints the cluster nodes and its master, then leaves', async () => {
  const [portA, portB, multicastPort] = randomPorts(3);
  const cluster = uniqueCluster();
  await withNodes(async ({ node }) => {
    const a = node(loopbackOptions({ port: portA, multicastPort, cluster, metadata: { role: 'a' } }), 'A');
    const b = node(loopbackOptions({ port: portB, multicastPort, cluster, metadata: { role: 'b' } }), 'B');
    await a.events.until('A and B joined', () => a.get_nodes().length === 1 && b.get_nodes().length === 1);
    await a.events.until('a master on A', () => a.get_master() !== undefined);
    await b.events.until('a master on B', () => b.get_master() !== undefined);
    const master = a.get_master();

    const result = await cli(['members', ...flags(multicastPort, cluster), '--wait', '1500']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split('\n');
    assert.match(lines[0], new RegExp(`^cluster "${cluster}": 2 nodes, master: \\S+ \\(${master.id.slice(0, 8)}\\)$`));
    assert.deepEqual(lines[1].split(/\s{2,}/), ['ID', 'HOST', 'ADDRESS', 'ROLE', 'METADATA']);
    const rows = lines.slice(2).map((line) => line.split(/\s+/));
    assert.equal(rows.length, 2);
    const byId = new Map(rows.map((row) => [row[0], row]));
    for (const n of [a.get_node_info(), b.get_node_info()]) {
      const row = byId.get(n.id);
      assert.ok(row, `${n.id} listed`);
      assert.equal(row[2], `127.0.0.1:${n.port}`);
      assert.equal(row[3], n.id === master.id ? 'master' : 'node');
      assert.equal(row.at(-1), JSON.stringify(n.metadata));
    }
    // The observer joined as a non-eligible node and left: both saw it come and go, and the
    // master did not change.
    await a.events.until('the observer left', () => a.events.seen('removed_node').length === 1);
    assert.equal(a.events.seen('added_node').length, 2);
    assert.equal(a.get_master().id, master.id);
    assert.deepEqual(a.get_nodes().map((n) => n.id), [b.get_node_info().id]);

    // --json, through a seed instead of multicast.
    const json = await cli(['members', '--interface', '127.0.0.1', '--peers', `127.0.0.1:${portA}`, '--cluster', cluster, '--json', '--wait', '1000']);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout);
    assert.equal(parsed.cluster, cluster);
    assert.equal(parsed.master.id, master.id);
    assert.deepEqual(parsed.nodes.map((n) => n.id).sort(), [a.get_node_info().id, b.get_node_info().id].sort());
  });
});

test('--interface takes an IPv6 address: members over ::1 through an IPv6 seed', async () => {
  const [port] = randomPorts(1);
  const cluster = uniqueCluster();
  await withNodes(async ({ node }) => {
    const a = node(manualOptions({ port, cluster, address: '::1' }), 'A');
    await a.events.until('listening', () => a.events.seen('listening').length === 1);
    const json = await cli(['members', '--interface', '::1', '--peers', `[::1]:${port}`, '--cluster', cluster, '--json', '--wait', '1000']);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout);
    assert.deepEqual(parsed.nodes.map((n) => n.id), [a.get_node_info().id]);
    assert.equal(parsed.nodes[0].ip, '::1');
  });
});

test('espial members escapes what a peer could use to drive the terminal', async () => {
  const [portA, multicastPort] = randomPorts(2);
  const cluster = uniqueCluster();
  // Metadata is any JSON object: a string in it may hold an ESC, an 8-bit CSI (U+009B), a
  // newline or a right-to-left override.
  const metadata = { note: 'a\u001b[2Jb\u009b31mc\nd\u202ee\u007f' };
  await withNodes(async ({ node }) => {
    node(loopbackOptions({ port: portA, multicastPort, cluster, metadata }), 'A');
    const unsafe = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

    const text = await cli(['members', ...flags(multicastPort, cluster), '--wait', '1000']);
    assert.equal(text.code, 0, text.stderr);
    assert.doesNotMatch(text.stdout, unsafe);
    const lines = text.stdout.trim().split('\n');
    assert.equal(lines.length, 3, 'one line per node: the newline stayed escaped');
    assert.ok(lines[2].endsWith(String.raw`{"note":"a\u001b[2Jb\u009b31mc\nd\u202ee\u007f"}`), lines[2]);

    const json = await cli(['members', ...flags(multicastPort, cluster), '--json', '--wait', '1000']);
    assert.equal(json.code, 0, json.stderr);
    assert.doesNotMatch(json.stdout, unsafe);
    assert.deepEqual(JSON.parse(json.stdout).nodes[0].metadata, metadata, 'escaped, not changed');
  });
});

test('espial members exits 1 when it finds nobody', async () => {
  const [multicastPort] = randomPorts(1);
  const result = await cli(['members', ...flags(multicastPort, uniqueCluster()), '--wait', '300']);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stdout, /: 0 nodes, master: none/);
});

test('espial watch prints an added_node live and ends after --duration', async () => {
  const [portA, multicastPort] = randomPorts(2);
  const cluster = uniqueCluster();
  await withNodes(async ({ node }) => {
    const watching = cli(['watch', ...flags(multicastPort, cluster), '--duration', '2']);
    // Let the watcher start before the node it should see joining.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const a = node(loopbackOptions({ port: portA, multicastPort, cluster, metadata: { role: 'watched' } }), 'A');
    const result = await watching;
    assert.equal(result.code, 0, result.stderr);
    const id = a.get_node_info().id;
    assert.match(result.stdout, new RegExp(`^\\S+\\s+added_node\\s+${id} \\S+ 127\\.0\\.0\\.1:${portA} \\{"role":"watched"\\}$`, 'm'));
    assert.match(result.stdout, new RegExp(`new_master\\s+${id}`));
    // It left when its time was up: the node saw it come and go.
    await a.events.until('the watcher left', () => a.events.seen('removed_node').length === 1);
  });
});

test('espial node runs a node with --metadata until SIGINT, then leaves gracefully', async () => {
  const [portA, portCli, multicastPort] = randomPorts(3);
  const cluster = uniqueCluster();
  await withNodes(async ({ node }) => {
    const a = node(loopbackOptions({ port: portA, multicastPort, cluster }), 'A');
    let sentSignal = false;
    const running = cli(['node', ...flags(multicastPort, cluster), '--port', String(portCli), '--metadata', '{"role":"cli","n":1}', '--json'], {
      onStdout: (stdout, child) => {
        if (!sentSignal && /"event":"added_node"/.test(stdout)) {
          sentSignal = true;
          // Once it has joined, wait for A to see it, then Ctrl-C.
          a.events.until('the CLI node joined', () => a.get_nodes().length === 1).then(() => child.kill('SIGINT'), () => child.kill('SIGKILL'));
        }
      },
    });
    const result = await running;
    assert.equal(result.signal, null, result.stderr);
    assert.equal(result.code, 0, result.stderr);
    const added = a.events.seen('added_node');
    assert.equal(added.length, 1);
    assert.deepEqual(added[0].metadata, { role: 'cli', n: 1 });
    assert.equal(added[0].port, portCli);
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.ok(events.some((e) => e.event === 'added_node' && e.node.id === a.get_node_info().id));
    // A graceful exit: A hears removed_node at once, not after the heartbeat limit.
    await a.events.until('the CLI node left', () => a.events.seen('removed_node').length === 1, 3000);
  });
});

test('espial members marks the observers of espial watch and members', async () => {
  const [portA, multicastPort] = randomPorts(2);
  const cluster = uniqueCluster();
  await withNodes(async ({ node }) => {
    const a = node(loopbackOptions({ port: portA, multicastPort, cluster }), 'A');
    const watching = cli(['watch', ...flags(multicastPort, cluster), '--duration', '4']);
    await a.events.until('the watcher joined', () => a.get_nodes().length === 1);
    const watcher = a.get_nodes()[0];
    assert.deepEqual(watcher.metadata, { espial_observer: 'watch' });
    const result = await cli(['members', ...flags(multicastPort, cluster), '--wait', '1000']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split('\n');
    assert.match(lines[0], /: 2 nodes \(1 of them espial CLI observer\), master: /);
    const rows = new Map(lines.slice(2).map((line) => line.split(/\s+/)).map((row) => [row[0], row]));
    assert.equal(rows.get(watcher.id)[3], 'observer(watch)');
    assert.equal(rows.get(a.get_node_info().id)[3], 'master');
    const json = await cli(['members', ...flags(multicastPort, cluster), '--json', '--wait', '1000']);
    assert.deepEqual(JSON.parse(json.stdout).observers, [watcher.id]);
    assert.equal((await watching).code, 0);
  });
});

test('a bad --interface is one line on stderr and exit code 1', async () => {
  // 10.9.9.9 is no address of this machine (tests run in a namespace with loopback only):
  // binding it fails with EADDRNOTAVAIL before any packet is sent.
  for (const extra of [[], ['--port', '27999']]) {
    const result = await cli(['members', '--interface', '10.9.9.9', '--peers', '127.0.0.1:27998', '--wait', '100', ...extra]);
    assert.equal(result.code, 1, `${extra.join(' ')}: ${result.stderr}`);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${result.stderr}`);
    assert.match(lines[0], /^espial: .*10\.9\.9\.9.*(EADDRNOTAVAIL|ERR_ESPIAL_BIND)/);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack');
  }
});

test('espial request asks a handler (the master, a node id, or any) and prints its reply', async () => {
  const [portA, portB, multicastPort] = randomPorts(3);
  const cluster = uniqueCluster();
  await withNodes(async ({ node }) => {
    const a = node(loopbackOptions({ port: portA, multicastPort, cluster }), 'A');
    const b = node(loopbackOptions({ port: portB, multicastPort, cluster }), 'B');
    await a.events.until('A and B joined', () => a.get_nodes().length === 1 && b.get_nodes().length === 1);
    await a.events.until('a master on A', () => a.get_master() !== undefined);
    const master = a.get_master();
    for (const n of [a, b]) {
      n.handle('add', ([x, y]) => ({ sum: x + y, by: n.get_node_info().id }));
      n.handle('fail', () => {
        throw Object.assign(new Error('nope'), { code: 'E_NOPE' });
      });
      n.handle('never', () => new Promise(() => {}));
    }
    const base = ['request', ...flags(multicastPort, cluster), '--wait', '3000'];

    const toMaster = await cli([...base.slice(0, 1), 'add', '[1,2]', ...base.slice(1), '--target', 'master', '--json']);
    assert.equal(toMaster.code, 0, toMaster.stderr);
    assert.deepEqual(JSON.parse(toMaster.stdout), { sum: 3, by: master.id });

    const bId = b.get_node_info().id;
    const toB = await cli(['request', 'add', '[2,3]', ...base.slice(1), '--target', bId]);
    assert.equal(toB.code, 0, toB.stderr);
    assert.deepEqual(JSON.parse(toB.stdout), { sum: 5, by: bId });

    const any = await cli(['request', 'add', '[0,0]', ...base.slice(1)]);
    assert.equal(any.code, 0, any.stderr);
    assert.equal(JSON.parse(any.stdout).sum, 0);

    const failed = await cli(['request', 'fail', 'null', ...base.slice(1)]);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /nope \[remote E_NOPE\] \(ERR_ESPIAL_REMOTE\)/);

    const late = await cli(['request', 'never', '{}', ...base.slice(1), '--timeout', '300']);
    assert.equal(late.code, 1);
    assert.match(late.stderr, /ERR_ESPIAL_TIMEOUT/);

    const nobody = await cli(['request', 'nobody', '{}', ...base.slice(1), '--wait', '300']);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /ERR_ESPIAL_NO_HANDLER/);

    for (const [args, message] of [
      [['request', 'add'], /takes 2 arguments/],
      [['request', 'add', '{bad'], /<json> is not JSON/],
      [['request', 'add', '1', '--timeout', 'soon'], /--timeout must be/],
    ]) {
      const result = await cli(args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
  });
});
