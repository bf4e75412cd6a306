// Checked by tsc, never run. Each `@ts-expect-error` must be an error, or tsc fails
// ("Unused '@ts-expect-error' directive"), so wrong types are caught both ways.

import espial = require('espial');

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | void {}

// --- construction and options
const a: espial.Espial = espial();
const b = new espial.Espial({
  network: {
    port: 27272,
    address: { local: '127.0.0.1' },
    host_name: 'web1.org.internal',
    subnets: ['10.0.0.1'],
    multicast: true,
    multicast_address: '239.255.27.27',
    multicast_port: 27272,
    multicast_interface: '127.0.0.1',
    multicast_ttl: 1,
    peers: ['10.0.0.5:27272'],
  },
  cluster: 'espial',
  cluster_key: Buffer.alloc(16),
  master_eligible: true,
  master_election_timeout: 1000,
  master_polling_frequency: 5000,
  master_quorum: 0,
  send_presence_frequency: 5000,
  metadata: { role: 'web' },
  connection_filter_timeout: 5000,
  max_message_size: 16 * 1024 * 1024,
});
espial(null);
espial({ cluster_key: 'a string of sixteen+ chars' });
// @ts-expect-error unknown option
espial({ master_eligble: true });
// @ts-expect-error unknown nested option
espial({ network: { prot: 1 } });
// @ts-expect-error the port is a number
espial({ network: { port: '27272' } });
// @ts-expect-error metadata is an object
espial({ metadata: 'role=web' });
// @ts-expect-error pre-0.5 option
espial({ response_wait: 1000 });

const version: string = a.version;

// --- core events: each listener is typed by the event name
a.on('listening', () => {});
// @ts-expect-error listening has no argument
a.on('listening', (x: string) => x);
a.on('added_node', (node) => {
  assertType<Equal<typeof node, espial.EspialNode>>();
  const id: string = node.id;
  const host: string = node.host_name;
  const ip: string = node.ip;
  const port: number = node.port;
  const meta: Record<string, unknown> = node.metadata;
  void [id, host, ip, port, meta];
  // @ts-expect-error node objects carry no key material
  void node.key;
});
a.on('updated_node', (node) => assertType<Equal<typeof node, espial.EspialNode>>());
a.on('removed_node', (node) => assertType<Equal<typeof node, espial.EspialNode>>());
a.on('undelivered', (node, events) => {
  assertType<Equal<typeof node, espial.EspialNode>>();
  assertType<Equal<typeof events, espial.UndeliveredEvent[]>>();
  const first: { event: string; data: unknown } | undefined = events[0];
  void first;
});
a.on('node_accepted', (node) => assertType<Equal<typeof node, espial.EspialNode>>());
a.on('node_rejected', (node) => assertType<Equal<typeof node, espial.EspialCandidate>>());
a.on('new_master', (node) => assertType<Equal<typeof node, espial.EspialNode>>());
a.on('promotion', (p) => assertType<Equal<typeof p.previous_master, espial.EspialNode | undefined>>());
a.on('demotion', (next) => assertType<Equal<typeof next, espial.EspialNode | undefined>>());
a.on('error', (err) => {
  assertType<Equal<typeof err, espial.EspialError>>();
  const code: string = err.code;
  void code;
  if (err.code === 'ERR_ESPIAL_BIND' || err.code === 'ERR_ESPIAL_SEED') void err.message;
  // @ts-expect-error EspialErrorCode lists the codes espial has, no others
  const unknown: espial.EspialErrorCode = 'ERR_ESPIAL_NO_SUCH_CODE';
  void unknown;
});
// @ts-expect-error added_node hands out a node, not a number
a.on('added_node', (node: number) => node);
// @ts-expect-error promotion hands out { previous_master }, not a node
a.on('promotion', (p: espial.EspialNode) => p);

a.once('listening', () => {});
a.once('added_node', (node) => assertType<Equal<typeof node, espial.EspialNode>>());
a.once('updated_node', (node) => assertType<Equal<typeof node, espial.EspialNode>>());
a.once('removed_node', (node) => assertType<Equal<typeof node, espial.EspialNode>>());
a.once('node_accepted', (node) => assertType<Equal<typeof node, espial.EspialNode>>());
a.once('node_rejected', (node) => assertType<Equal<typeof node, espial.EspialCandidate>>());
a.once('new_master', (node) => assertType<Equal<typeof node, espial.EspialNode>>());
a.once('promotion', (p) => assertType<Equal<typeof p, espial.Promotion>>());
a.once('demotion', (next) => assertType<Equal<typeof next, espial.EspialNode | undefined>>());
a.once('error', (err) => assertType<Equal<typeof err, espial.EspialError>>());
// @ts-expect-error removed_node hands out a node, not a string
a.once('removed_node', (node: string) => node);

const onAdded = (node: espial.EspialNode) => void node;
a.addListener('added_node', onAdded).off('added_node', onAdded).removeListener('added_node', onAdded);
a.prependListener('demotion', (next) => assertType<Equal<typeof next, espial.EspialNode | undefined>>());
a.prependOnceListener('error', (err) => assertType<Equal<typeof err, espial.EspialError>>());

a.on('newListener', (event, listener) => void [event, listener]);
const custom: string = 'job' + String(Math.random());
a.on(custom, (data, from) => void [data, from]);
a.on(Symbol('s'), () => {});

// --- custom events
a.join('job');
a.on('job', (data, from) => {
  assertType<Equal<typeof from, espial.EspialNode>>();
  void data;
});
a.leave('job');
const sent: Promise<void> = a.send('job', { id: 1 });
a.send('job', Buffer.from([1]), (err) => void err);
a.send('job', 1, b.get_node_info());
a.send('job', 1, 'an-id');
a.send('job', 1, [b.get_node_info(), 'an-id'], (err: Error | null) => void err);
a.send('job', 1, null);
// @ts-expect-error targets are node objects or ids
a.send('job', 1, 42);
void sent;

// --- methods
const me: espial.EspialNode = a.get_node_info();
const others: espial.EspialNode[] = a.get_nodes();
const master: espial.EspialNode | undefined = a.get_master();
const isMaster: boolean = a.is_master();
a.promote();
a.set_metadata({ role: 'db' });
// @ts-expect-error metadata is an object
a.set_metadata('db');
a.connection_filter((data, cb) => cb(data.host.endsWith('org.internal')));
a.connection_filter((data) => data.host_name === 'x');
a.connection_filter(async (data) => data.ip.startsWith('10.1.'));
// @ts-expect-error the filter sees no metadata: it crosses only after admission
a.connection_filter(async (data) => data.metadata['role'] === 'web');
a.connection_filter(null);
// @ts-expect-error the filter is a function or null
a.connection_filter('all');
const stats: espial.EspialStats = a.stats();
const counters: number[] = [
  stats.messages_in, stats.messages_out, stats.bytes_in, stats.bytes_out,
  stats.handshakes_completed, stats.handshakes_failed, stats.frames_rejected,
  stats.connections_refused, stats.nodes_rejected, stats.beacons_sent, stats.beacons_ignored, stats.beacons_refused,
  stats.messages_refused,
  stats.filter_errors,
  stats.key_mismatches,
];
const exited: Promise<void> = a.exit((err) => void err);
void [version, me, others, master, isMaster, counters, exited];

// --- request and reply (issue 20): the reply type follows from the generic
const rr = espial({ request_timeout: 5000, max_requests: 100, max_requests_per_target: 10, max_handler_concurrency: 4 });
rr.handle('sum', (data: number[], from) => {
  assertType<Equal<typeof from, espial.EspialNode>>();
  return data.reduce((x, y) => x + y, 0);
});
rr.handle('later', async () => Buffer.from('x'));
rr.unhandle('sum');
async function requests(): Promise<void> {
  const n = await rr.request<number>('sum', [1, 2], 'master', { timeout: 100, signal: AbortSignal.timeout(50) });
  assertType<Equal<typeof n, number>>();
  const any = await rr.request('sum', [1]);
  assertType<Equal<typeof any, unknown>>();
  await rr.request<string>('sum', [1], { timeout: 10 });
  await rr.request('sum', [1], rr.get_nodes()[0]);
  const results = await rr.query<number>('sum', [1, 2], { timeout: 100 });
  for (const r of results) {
    if (r.error) assertType<Equal<typeof r.error.code, espial.EspialErrorCode>>();
    else assertType<Equal<typeof r.value, number>>();
  }
  // @ts-expect-error a timeout is a number
  await rr.request('sum', [1], 'master', { timeout: '1s' });
}
void requests;
