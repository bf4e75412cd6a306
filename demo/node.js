'use strict';

// One node of the demo cluster, run by demo.js as a child process. It reports its events to
// the parent over IPC and answers the parent's requests; it never decides anything itself.
// Usage (by demo.js only): node node.js <name> <port> <multicast port> <cluster>

const espial = require('..');

const [name, port, multicastPort, cluster] = process.argv.slice(2);

const node = espial({
  network: {
    port: Number(port),
    host_name: `demo-${name.toLowerCase()}`,
    // Loopback only: the demo must never touch a real network interface.
    address: { local: '127.0.0.1' },
    multicast_interface: '127.0.0.1',
    multicast_port: Number(multicastPort),
  },
  cluster,
  metadata: { name },
});

// Peers may still report (e.g. removed_node) after this node has left and hung up on the demo.
const report = (event, data) => process.connected && process.send({ type: 'event', event, data });

node.on('listening', () => report('listening', node.get_node_info()));
for (const event of ['added_node', 'updated_node', 'node_accepted', 'node_rejected', 'removed_node']) {
  node.on(event, (other) => report(event, other));
}
node.on('error', (err) => report('error', { message: err.message, code: err.code }));

const requests = {
  get_nodes: () => node.get_nodes(),
  exit: () => node.exit(),
};

process.on('message', async ({ type }) => {
  try {
    process.send({ type: 'reply', data: await requests[type]() });
  } catch (err) {
    report('error', { message: err.message, code: err.code });
  }
  // After exit only the IPC channel is left holding the process open.
  if (type === 'exit') process.disconnect();
});

// If the demo goes away (even killed), leave instead of lingering.
process.on('disconnect', () => node.exit());
