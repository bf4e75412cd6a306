'use strict';

// One espial node inside a network namespace host of the test bed (testbed.js runs it as
// `ip netns exec <ns> node node-child.js <options JSON>`). It talks to the test over JSON
// lines rather than node's IPC channel, so nothing depends on `ip netns exec` passing an
// extra descriptor on:
//   stdout: { espial: 'info', node } once, then { espial: 'event', event, arg, from? } for
//           every event (custom events joined through requests included) and
//           { espial: 'reply', id, data } for each request.
//   stdin:  { id, type, ...data } requests.
// When stdin closes (the test went away) the node exits and the process ends.

const readline = require('node:readline');
const espial = require('../..');

const node = espial(JSON.parse(process.argv[2]));

const emit = (msg) => process.stdout.write(`${JSON.stringify(msg)}\n`);

const { NODE_EVENTS: EVENTS } = require('../support.js');
for (const event of EVENTS) node.on(event, (arg) => emit({ espial: 'event', event, arg }));
node.on('error', (err) => emit({ espial: 'event', event: 'error', arg: { message: err.message, code: err.code } }));

emit({ espial: 'info', node: node.get_node_info() });

const requests = {
  get_nodes: () => node.get_nodes(),
  stats: () => node.stats(),
  master: () => ({ master: node.get_master(), is_master: node.is_master(), nodes: node.get_nodes() }),
  set_metadata: ({ metadata }) => {
    node.set_metadata(metadata);
    return node.get_node_info();
  },
  join: ({ event }) => {
    node.join(event);
    node.on(event, (data, from) => {
      const arg = Buffer.isBuffer(data) ? { buffer: data.toString('hex') } : data;
      emit({ espial: 'event', event, arg, from });
    });
    return true;
  },
  // `data` { type: 'Buffer', data: [bytes] } (a Buffer as JSON.stringify writes it) is sent
  // as a Buffer.
  send: async ({ event, data, targets }) => {
    try {
      const payload = data?.type === 'Buffer' && Array.isArray(data.data) ? Buffer.from(data.data) : data;
      await node.send(event, payload, targets);
      return { ok: true };
    } catch (err) {
      return { error: { message: err.message, code: err.code } };
    }
  },
  exit: async () => {
    await node.exit();
    return node.get_nodes();
  },
};

let ending = false;
async function end(code) {
  if (ending) return;
  ending = true;
  const timer = setTimeout(() => process.exit(code), 3000);
  timer.unref();
  try {
    await node.exit();
  } finally {
    process.exit(code);
  }
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  const handler = requests[msg.type];
  const data = handler ? await handler(msg) : { error: { message: `unknown request ${msg.type}` } };
  emit({ espial: 'reply', id: msg.id, data });
  if (msg.type === 'exit') end(0);
});
lines.on('close', () => end(0));
