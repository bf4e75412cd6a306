'use strict';

// IPv6, dual-stack and advertised addresses on real hosts (issue 17): namespace hosts with
// IPv6 addresses only (fd77::K, no IPv4 at all), with both, and a node reachable only at an
// advertised address through a port-forwarding proxy (forwarder.js, like docker-proxy).
// Needs root; fails where namespaces cannot be made unless ESPIAL_SKIP_NETNS=1.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const readline = require('node:readline');
const { withTestbed } = require('./testbed.js');
const { uniqueSetup, converge } = require('./helpers.js');
const { within, WAIT_MS } = require('../support.js');

function options(k, { cluster, multicastPort }, network) {
  return { cluster, network: { port: 27272, host_name: `h${k}`, multicast_port: multicastPort, ...network } };
}

// Each node's view: every other host seen at `expected(k)` (its ip), by host name.
async function assertSeenAt(nodes, expected) {
  for (const n of nodes) {
    const seen = await n.request('get_nodes');
    assert.equal(seen.length, nodes.length - 1, `${n.name} sees the others`);
    for (const other of seen) {
      const k = Number(other.host_name.slice(1));
      assert.equal(other.ip, expected(k, n.host), `${n.name} sees ${other.host_name} at ${other.ip}`);
    }
    n.events.assertNoErrors();
  }
}

test('IPv6-only hosts form one cluster by seeds ("[addr]:port" and a bare address)', async (t) => {
  await withTestbed(
    t,
    3,
    async (bed) => {
      const setup = uniqueSetup();
      const on = (k, peers) => options(k, setup, { address: { local: bed.addr6(k) }, multicast: false, peers });
      const nodes = await Promise.all([
        bed.runNode(1, on(1, [])),
        bed.runNode(2, on(2, [`[${bed.addr6(1)}]:27272`])),
        bed.runNode(3, on(3, [bed.addr6(2)])), // no port: its own network.port
      ]);
      for (const n of nodes) assert.equal(n.node.ip, bed.addr6(n.host));
      await converge(nodes, 'three IPv6-only hosts');
      await assertSeenAt(nodes, (k) => bed.addr6(k));
    },
    { family: 'ipv6' },
  );
});

test('IPv6-only hosts form one cluster by IPv6 multicast (ff02:: group on eth0)', async (t) => {
  await withTestbed(
    t,
    3,
    async (bed) => {
      const setup = uniqueSetup();
      const nodes = await Promise.all(
        [1, 2, 3].map((k) =>
          bed.runNode(
            k,
            options(k, setup, { address: { local: bed.addr6(k) }, multicast_address: 'ff02::27:27', multicast_interface: 'eth0' }),
          ),
        ),
      );
      await converge(nodes, 'three IPv6-only hosts by multicast');
      await assertSeenAt(nodes, (k) => bed.addr6(k));
      // Beacons did it: nothing else was configured, and they were sent.
      for (const n of nodes) assert.ok((await n.request('stats')).beacons_sent > 0, `${n.name} sent beacons`);
    },
    { family: 'ipv6' },
  );
});

test('dual stack: nodes listening on "::" join over IPv4 and IPv6 alike, each peer seen at the address it came from', async (t) => {
  await withTestbed(
    t,
    3,
    async (bed) => {
      const setup = uniqueSetup();
      const on = (k, peers) => options(k, setup, { address: { local: '::' }, multicast: false, peers });
      const nodes = await Promise.all([
        bed.runNode(1, on(1, [])),
        bed.runNode(2, on(2, [`${bed.addr(1)}:27272`])), // over IPv4
        bed.runNode(3, on(3, [`[${bed.addr6(1)}]:27272`])), // over IPv6
      ]);
      await converge(nodes, 'three dual-stack hosts');
      const [a, b, c] = nodes;
      const at = async (n, k) => (await n.request('get_nodes')).find((o) => o.host_name === `h${k}`).ip;
      // Host 1 sees host 2 at its IPv4 address (not as ::ffff:10.77.0.2) and host 3 at its IPv6 one.
      assert.equal(await at(a, 2), bed.addr(2));
      assert.equal(await at(a, 3), bed.addr6(3));
      assert.equal(await at(b, 1), bed.addr(1));
      assert.equal(await at(c, 1), bed.addr6(1));
      // Hosts 2 and 3 met through host 1's member list, over one family or the other.
      assert.ok([bed.addr(3), bed.addr6(3)].includes(await at(b, 3)));
      for (const n of nodes) n.events.assertNoErrors();
    },
    { family: 'dual' },
  );
});

test('dual stack with IPv4 multicast: nodes on "::" name their interface address in beacons', async (t) => {
  await withTestbed(
    t,
    2,
    async (bed) => {
      const setup = uniqueSetup();
      const nodes = await Promise.all(
        [1, 2].map((k) => bed.runNode(k, options(k, setup, { address: { local: '::' }, multicast_interface: bed.addr(k) }))),
      );
      await converge(nodes, 'two dual-stack hosts by IPv4 multicast');
      await assertSeenAt(nodes, (k) => bed.addr(k));
    },
    { family: 'dual' },
  );
});

// Host 1's node listens on 192.168.77.1, an address only host 1 has (on lo): no other host
// can route to it. A forwarder on host 1 listens on 10.77.0.1:30001 and forwards TCP and UDP
// to it, and the node advertises that. Host 2 has only the advertised address as its seed;
// host 3 only host 2's address: it can reach host 1 only by the advertised address it learns
// from host 2's member list.
test('a node behind an advertised address (a port-forwarding proxy) is reached at it', async (t) => {
  await withTestbed(t, 3, async (bed) => {
    const setup = uniqueSetup();
    const hidden = '192.168.77.1';
    const advertised = `${bed.addr(1)}:30001`;
    bed.exec(1, 'ip', 'addr', 'add', `${hidden}/32`, 'dev', 'lo');
    const forwarder = bed.spawnIn(bed.ns(1), [process.execPath, path.join(__dirname, 'forwarder.js'), bed.addr(1), '30001', hidden, '27272'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const clients = { tcp: new Set(), udp: new Set() };
    let ready;
    const isReady = new Promise((resolve) => (ready = resolve));
    readline.createInterface({ input: forwarder.stdout }).on('line', (line) => {
      const msg = JSON.parse(line);
      if (msg.ready) ready();
      if (msg.tcp) clients.tcp.add(msg.tcp);
      if (msg.udp) clients.udp.add(msg.udp);
    });
    await within(WAIT_MS, isReady, () => 'the forwarder did not start');

    const plain = (k, peers) => options(k, setup, { address: { local: bed.addr(k) }, multicast: false, peers });
    const a = await bed.runNode(1, options(1, setup, { address: { local: hidden }, multicast: false, advertise: advertised }));
    assert.equal(a.node.advertised, advertised, 'the node object says where it is dialed');
    assert.equal(a.node.ip, hidden, 'and its ip is where it listens');
    const b = await bed.runNode(2, plain(2, [advertised]));
    const c = await bed.runNode(3, plain(3, [`${bed.addr(2)}:27272`]));
    const nodes = [a, b, c];
    await converge(nodes, 'a node behind a forwarder and two others', 20_000);
    for (const n of [b, c]) {
      const seen = (await n.request('get_nodes')).find((o) => o.id === a.node.id);
      assert.equal(seen.advertised, advertised, `${n.name}: advertised carries the advertised address`);
      assert.equal(seen.ip, bed.addr(1), `${n.name}: ip is the address seen on the socket (the forwarder's)`);
      n.events.assertNoErrors();
    }
    // Both came in through the forwarder: host 3 by the address host 2's member list gave.
    assert.ok(clients.tcp.has(bed.addr(2)), `host 2 dialed the advertised address (${[...clients.tcp]})`);
    assert.ok(clients.tcp.has(bed.addr(3)), `host 3 dialed the advertised address (${[...clients.tcp]})`);
    forwarder.kill('SIGKILL');
  });
});
