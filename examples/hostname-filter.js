'use strict';

// The README's host-name filter: only nodes whose host name ends in ".org.internal" may
// join. A host name is what a node says about itself, so this keeps honest nodes apart; to
// keep a hostile host out, decide on data.ip, the address seen on its connection (all three
// nodes here share 127.0.0.1). Three nodes run in this process, on 127.0.0.1 with ports and a cluster name of
// their own: web1.org.internal and db1.org.internal join each other; laptop.example.com is
// refused by both (node_rejected) and is seen by nobody.
//
//   node examples/hostname-filter.js
//
// Exits 0 once that has been shown, 1 if it was not within 15 s.

const crypto = require('node:crypto');
// In your application: require('espial')
const espial = require('..');

const cluster = `example-filter-${crypto.randomBytes(4).toString('hex')}`;
const basePort = 20000 + crypto.randomInt(12000);
const DEADLINE_MS = 15_000;

function start(hostName, port) {
  const node = espial({
    network: {
      port,
      host_name: hostName,
      address: { local: '127.0.0.1' },
      multicast_interface: '127.0.0.1',
      multicast_port: basePort + 3,
    },
    cluster,
    master_election_timeout: 300,
  });
  // Right after creating the node, before it starts (on the next tick): every node
  // applies its own filter, so set it on every node.
  node.connection_filter(function (data, fn) {
    return fn(/\.org\.internal$/.test(data.host_name));
  });
  node.on('error', (err) => fail(`${hostName}: ${err.code} ${err.message}`));
  node.on('added_node', (other) => console.log(`${hostName}: added ${other.host_name}`));
  node.on('node_rejected', (by) => console.log(`${hostName}: rejected by ${by.host_name}`));
  return node;
}

const web = start('web1.org.internal', basePort);
const db = start('db1.org.internal', basePort + 1);
const laptop = start('laptop.example.com', basePort + 2);
const all = [web, db, laptop];

const deadline = setTimeout(() => fail('not shown within 15 s'), DEADLINE_MS);

function fail(message) {
  console.error(`hostname-filter example failed: ${message}`);
  for (const node of all) node.exit();
  process.exitCode = 1;
  clearTimeout(deadline);
}

const hosts = (node) => node.get_nodes().map((n) => n.host_name).sort();
const once = (node, event) => new Promise((resolve) => node.once(event, resolve));

(async () => {
  // The two org.internal nodes find each other, and the laptop hears "no" from both.
  const rejectedBy = new Set();
  const rejectedByBoth = new Promise((resolve) => {
    laptop.on('node_rejected', (by) => {
      rejectedBy.add(by.id);
      if (rejectedBy.size === 2) resolve();
    });
  });
  await Promise.all([once(web, 'added_node'), once(db, 'added_node'), rejectedByBoth]);
  // Give a wrongly admitted laptop time to show up anywhere before looking.
  await new Promise((resolve) => setTimeout(resolve, 500));

  console.log(`web1 sees   ${JSON.stringify(hosts(web))}`);
  console.log(`db1 sees    ${JSON.stringify(hosts(db))}`);
  console.log(`laptop sees ${JSON.stringify(hosts(laptop))}`);
  const ok =
    JSON.stringify(hosts(web)) === '["db1.org.internal"]' &&
    JSON.stringify(hosts(db)) === '["web1.org.internal"]' &&
    hosts(laptop).length === 0 &&
    laptop.stats().handshakes_completed >= 2 && // it did connect; the filters refused it
    web.stats().nodes_rejected + db.stats().nodes_rejected >= 2;
  if (!ok) return fail('the membership is not what the filter allows');
  await Promise.all(all.map((node) => node.exit()));
  clearTimeout(deadline);
  console.log('only the org.internal nodes formed a cluster');
})().catch((err) => fail(err.stack));
