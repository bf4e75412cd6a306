'use strict';

// One node of the demo cluster, run by demo.js as a child process. It reports its events to
// the parent over IPC and answers the parent's requests; the only thing it does by itself is
// what an application would: answer each 'job' it receives with a 'result' to the sender.
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
const reportError = (err) => report('error', { message: err.message, code: err.code });

node.on('listening', () => report('listening', node.get_node_info()));
for (const event of ['added_node', 'updated_node', 'node_accepted', 'node_rejected', 'removed_node', 'new_master']) {
  node.on(event, (other) => report(event, other));
}
node.on('promotion', ({ previous_master }) => report('promotion', { previous_master: previous_master || null }));
node.on('demotion', (successor) => report('demotion', { new_master: successor || null }));
node.on('error', reportError);

// The application part: a worker sums the numbers of a job and sends the result back to the
// node that sent the job (only once it has joined 'job'); the master hears the results
// (once it has joined 'result').
node.on('job', (job, from) => {
  const sum = job.numbers.reduce((total, n) => total + n, 0);
  report('job', { job, from });
  node.send('result', { id: job.id, sum, by: name }, from).catch(reportError);
});
node.on('result', (result, from) => report('result', { result, from }));

const requests = {
  get_nodes: () => node.get_nodes(),
  master: () => ({ master: node.get_master() || null, is_master: node.is_master() }),
  join: ({ event }) => node.join(event),
  send: ({ event, data, targets }) => node.send(event, data, targets),
  exit: () => node.exit(),
};

process.on('message', async ({ type, id, ...args }) => {
  try {
    process.send({ type: 'reply', id, data: await requests[type](args) });
  } catch (err) {
    reportError(err);
  }
  // After exit only the IPC channel is left holding the process open.
  if (type === 'exit') process.disconnect();
});

// If the demo goes away (even killed), leave instead of lingering.
process.on('disconnect', () => node.exit());
