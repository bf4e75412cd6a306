'use strict';

// DNS discovery on real hosts with a real DNS server: dnsmasq on host 1 of the namespace
// test bed answers the seed name of the README's Kubernetes manifest (`my-app-headless`,
// through the pod-style search domain) with the live hosts' addresses, as a cluster's DNS
// answers a headless Service. Nodes run with multicast off and no subnet scan, so the name
// is the only way they can find each other. Needs root and dnsmasq (.ci/run installs it);
// fails where either is missing unless ESPIAL_SKIP_NETNS=1.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { withTestbed } = require('./testbed.js');
const { Dns, DnsUnavailable } = require('./dns.js');
const { hostOptions, uniqueSetup, converge } = require('./helpers.js');
const { byId, delay } = require('../support.js');
const { kubernetesManifest } = require('../deploying.js');

// The manifest's own seed, so that what the README tells users to write is what runs here.
const SEED = kubernetesManifest().seed;
const [SERVICE, SEED_PORT] = SEED.split(':');
const RESOLVE_MS = 300;

// Options for host k: the node's port is the seed's, and the name is its only way in.
function dnsOptions(bed, k, setup, peers = [SEED]) {
  const options = hostOptions(bed, k, setup);
  assert.equal(options.network.port, Number(SEED_PORT), 'nodes listen on the port the seed names');
  Object.assign(options.network, { multicast: false, subnets: [], peers, peers_resolve_interval: RESOLVE_MS });
  return options;
}

// A test bed of `count` hosts with dnsmasq on host 1 answering `records`.
async function withDns(t, count, records, body) {
  await withTestbed(t, count, async (bed) => {
    let dns;
    try {
      dns = await Dns.start(bed, 1, records);
    } catch (err) {
      if (err instanceof DnsUnavailable && process.env.ESPIAL_SKIP_NETNS === '1') {
        t.skip(`${err.message}; skipped because ESPIAL_SKIP_NETNS=1`);
        return;
      }
      throw err;
    }
    try {
      await body(bed, dns);
    } finally {
      await dns.stop();
    }
  });
}

async function stats(child) {
  return child.request('stats');
}

test('nodes given only the headless-service name form one cluster', async (t) => {
  await withDns(t, 4, { [SERVICE]: [] }, async (bed, dns) => {
    const hosts = [2, 3, 4];
    await dns.update({ [SERVICE]: hosts.map((k) => bed.addr(k)) });
    assert.deepEqual(dns.lookup(2, SERVICE), hosts.map((k) => bed.addr(k)).sort(), 'the short name resolves in a host');
    const setup = uniqueSetup();
    const nodes = await Promise.all(hosts.map((k) => bed.runNode(k, dnsOptions(bed, k, setup))));
    await converge(nodes, 'three hosts seeded by name');
    for (const n of nodes) {
      for (const other of await n.request('get_nodes')) {
        assert.equal(other.ip, bed.addr(Number(other.host_name.slice(1))), `${n.name} sees ${other.host_name} at its address`);
      }
      assert.equal((await stats(n)).seed_lookups_failed, 0);
      n.events.assertNoErrors();
    }
  });
});

test('a host replaced by one at a new address (the DNS answer updated) is found by the others', async (t) => {
  await withDns(t, 5, { [SERVICE]: [] }, async (bed, dns) => {
    await dns.update({ [SERVICE]: [2, 3, 4].map((k) => bed.addr(k)) });
    const setup = uniqueSetup();
    const [a, b, old] = await Promise.all([2, 3, 4].map((k) => bed.runNode(k, dnsOptions(bed, k, setup))));
    await converge([a, b, old], 'the first three hosts');

    // The pod on host 4 goes; its replacement comes up on host 5 and the Service's answer
    // follows. The replacement is given no seed at all: it joins only because the running
    // nodes look the name up again and dial the new address.
    await old.kill();
    await Promise.all([a, b].map((n) => n.events.next('removed_node', `${n.name}: removed_node for host 4`, byId(old.node.id))));
    await dns.update({ [SERVICE]: [2, 3, 5].map((k) => bed.addr(k)) });
    const replacement = await bed.runNode(5, dnsOptions(bed, 5, setup, []));
    await converge([a, b, replacement], 'the two hosts and the replacement');
    for (const n of [a, b]) {
      const seen = await n.request('get_nodes');
      assert.ok(seen.some((o) => o.id === replacement.node.id && o.ip === bed.addr(5)), `${n.name} sees the replacement at its new address`);
      n.events.assertNoErrors();
    }
  });
});

test('a name that does not resolve: the node runs on, says so once, counts the lookups, and joins once it resolves', async (t) => {
  await withDns(t, 3, { [SERVICE]: [] }, async (bed, dns) => {
    const setup = uniqueSetup();
    const missing = `no-such-service:${SEED_PORT}`;
    const lonely = await bed.runNode(2, dnsOptions(bed, 2, setup, [missing]));
    lonely.events.allowErrors('ERR_ESPIAL_SEED');
    const failed = await pollStats(lonely, (s) => s.seed_lookups_failed >= 3, 10_000);
    assert.ok(failed.seed_lookups_failed >= 3);
    const errors = lonely.events.seen('error');
    assert.equal(errors.length, 1, 'reported once');
    assert.equal(errors[0].code, 'ERR_ESPIAL_SEED');
    assert.match(errors[0].message, /no-such-service/);
    assert.deepEqual(await lonely.request('get_nodes'), [], 'alone, and running');

    // The name appears (the Service gets a pod on host 3): the node, still backing off
    // (at most 30 s, but here a few hundred ms per failure), dials it.
    await dns.update({ [SERVICE]: [], 'no-such-service': [bed.addr(3)] });
    const other = await bed.runNode(3, dnsOptions(bed, 3, setup, []));
    await converge([lonely, other], 'the node whose seed came to resolve', 20_000);
    assert.equal(lonely.events.seen('error').length, 1, 'no further report');
  });
});

test('without an error listener, a name that does not resolve is a process warning, not a crash', async (t) => {
  await withDns(t, 2, { [SERVICE]: [] }, async (bed) => {
    const script = `
      const espial = require(${JSON.stringify(path.join(__dirname, '..', '..'))});
      let warned = 0;
      process.on('warning', (w) => { if (w.code === 'ERR_ESPIAL_SEED') warned++; });
      const node = espial({ cluster: 'nolistener', network: { address: { local: ${JSON.stringify(bed.addr(2))} },
        multicast: false, subnets: [], peers: ['no-such-service:27272'], peers_resolve_interval: 100 } });
      const started = Date.now();
      const poll = setInterval(async () => {
        const failed = node.stats().seed_lookups_failed;
        if (failed >= 3 || Date.now() - started > 10000) {
          clearInterval(poll);
          await node.exit();
          console.log(JSON.stringify({ failed, warned }));
        }
      }, 50);`;
    const proc = bed.spawnIn(bed.ns(2), [process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (err += d));
    const code = await new Promise((resolve) => proc.once('exit', resolve));
    assert.equal(code, 0, `the process ended by itself; stderr: ${err}`);
    const { failed, warned } = JSON.parse(out);
    assert.ok(failed >= 3, `lookups failed and were counted: ${failed}`);
    assert.equal(warned, 1, 'one warning for the run of failures');
  });
});

// Polls a child's stats until `done(stats)`, at most `ms`.
async function pollStats(child, done, ms) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await stats(child);
    if (done(last)) return last;
    await delay(100);
  }
  throw new Error(`${child.name}: stats not reached within ${ms} ms; last: ${JSON.stringify(last)}`);
}
