'use strict';

// Helpers for the scenario tests on the namespace test bed.

const crypto = require('node:crypto');
const { delay } = require('../support.js');

// Options for the node on host k: its own address, multicast on its own interface, a cluster
// and multicast port of this test's own.
function hostOptions(bed, k, { cluster, multicastPort, ...rest }) {
  return {
    network: {
      port: 27272,
      address: { local: bed.addr(k) },
      multicast_interface: bed.addr(k),
      multicast_port: multicastPort,
      host_name: `h${k}`,
    },
    cluster,
    ...rest,
  };
}

function uniqueSetup() {
  return {
    cluster: `netns-${crypto.randomBytes(6).toString('hex')}`,
    multicastPort: 20000 + crypto.randomInt(12000), // below the ephemeral port range, as in support.js
  };
}

// One poll of every node: what it sees and whom it takes for master.
async function snapshot(children) {
  return Promise.all(
    children.map(async (c) => {
      const { master, is_master: isMaster, nodes } = await c.request('master');
      return { name: c.name, id: c.node.id, master: master?.id, isMaster, sees: nodes.map((n) => n.id).sort() };
    }),
  );
}

// Whether `group` is one cluster: every member sees exactly the others, all name the same
// master, which is one of them, and only that one says it is master.
function agreed(states) {
  const all = states.map((s) => s.id);
  for (const s of states) {
    const others = all.filter((id) => id !== s.id).sort();
    if (s.sees.join() !== others.join()) return false;
  }
  const masters = new Set(states.map((s) => s.master));
  if (masters.size !== 1) return false;
  const [master] = masters;
  if (master === undefined || !all.includes(master)) return false;
  return states.filter((s) => s.isMaster).map((s) => s.id).join() === master;
}

// Resolves with the agreed master's id once `children` form one cluster with one master,
// polling every 150 ms; rejects after `ms` with the last snapshot.
async function converge(children, what, ms = 15_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await snapshot(children);
    if (agreed(last)) return last[0].master;
    await delay(150);
  }
  throw new Error(`${what}: no single membership and master within ${ms} ms; last: ${JSON.stringify(last, null, 1)}`);
}

module.exports = { hostOptions, uniqueSetup, snapshot, agreed, converge };
