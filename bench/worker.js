'use strict';

// One benchmark node in a process of its own, started by bench/run.js (inside a network
// namespace of its own, or on a loopback address). Usage:
//   node bench/worker.js '<JSON spec>'
// spec: { system, ip, index, hosts: [ip, …] (every host of the run, for unicast), size }
// system: espial | discover | discover-key | moleculer | libp2p | tcp | tcp-gcm | bare
//
// Over IPC it sends { type: 'ready', pid, id }, { type: 'listening', t }, then
// { type: 'state', t, members, master } whenever its view of the cluster changes and
// { type: 'promotion', t } whenever it claims mastership. It answers each request
// { type, rid, … } with { type: 'reply', rid, data }. Times are milliseconds of the
// monotonic clock (process.hrtime), which every process on the machine shares.

const crypto = require('node:crypto');
const net = require('node:net');

const spec = JSON.parse(process.argv[2]);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const send = (msg) => process.connected && process.send(msg);

const TCP_PORT = 27300;
const DISCOVER_PORT = 12345;
const KEY = 'espial-bench-shared-secret-0123456789';

// The same ~50-byte message for every system: JSON.stringify gives 50 bytes up to seq 9 999 999.
const PAD = 'x'.repeat(50 - JSON.stringify({ seq: 0, pad: '' }).length - 6);
const small = (seq) => ({ seq, pad: PAD });

let system; // the adapter below, by spec.system
let recv = { count: 0, bytes: 0, first: 0, last: 0, outOfOrder: 0, lastSeq: -1 };

function onBenchMessage(data) {
  const t = now();
  if (recv.count === 0) recv.first = t;
  recv.count++;
  recv.last = t;
  if (Buffer.isBuffer(data)) {
    recv.bytes += data.length;
  } else if (data && typeof data.seq === 'number') {
    if (data.seq <= recv.lastSeq) recv.outOfOrder++;
    recv.lastSeq = data.seq;
  }
}

// ---------------------------------------------------------------------------------------
// espial, with default options apart from the address on loopback runs (where every node
// must have a 127.0.0.K address of its own and the multicast interface on loopback).

function espialSystem() {
  // ESPIAL_BENCH_MODULE: another build of the package (e.g. one with symbols, for perf).
  const espial = require(process.env.ESPIAL_BENCH_MODULE || '..');
  // ESPIAL_BENCH_OPTIONS: options (JSON) instead of the defaults, e.g. another
  // send_presence_frequency.
  const options = JSON.parse(process.env.ESPIAL_BENCH_OPTIONS || '{}');
  if (spec.loopback) {
    options.network = { ...options.network, address: { local: spec.ip }, multicast_interface: spec.ip };
  }
  const node = espial(options);
  let last = '';
  const report = () => {
    const members = node.get_nodes().map((n) => n.id).sort();
    const master = node.get_master()?.id ?? null;
    const key = JSON.stringify([members, master]);
    if (key !== last) {
      last = key;
      send({ type: 'state', t: now(), members, master });
    }
  };
  node.on('listening', () => {
    send({ type: 'listening', t: now() });
    report();
  });
  for (const e of ['added_node', 'removed_node', 'new_master', 'demotion']) node.on(e, report);
  node.on('promotion', () => {
    send({ type: 'promotion', t: now() });
    report();
  });
  node.on('error', (err) => send({ type: 'error', message: `${err.code}: ${err.message}` }));
  send({ type: 'ready', pid: process.pid, id: node.get_node_info().id });

  return {
    leave: () => node.exit(),
    recv(event) {
      node.join(event);
      node.on(event, onBenchMessage);
    },
    onPing(handler) {
      node.join('ping');
      node.join('pong');
      node.on('ping', (data, from) => handler('ping', data, from.id));
      node.on('pong', (data, from) => handler('pong', data, from.id));
    },
    sendTo: (event, data, target) => node.send(event, data, target),
    // Resolves when what was sent so far is handed over (backpressure).
    flush: (lastPromise) => lastPromise,
    // Request and reply: an echo handler, and a request to one node.
    serve: () => node.handle('rr', (data) => data),
    call: (data, target) => node.request('rr', data, target, { timeout: 5000 }),
  };
}

// ---------------------------------------------------------------------------------------
// node-discover with its default timings; where it sends is set explicitly: the subnet
// broadcast of the namespace bridge, or unicast to the loopback addresses of the run.

function discoverSystem(withKey) {
  const Discover = require('node-discover');
  const options = { address: spec.loopback ? spec.ip : '0.0.0.0', port: DISCOVER_PORT };
  if (spec.loopback) options.unicast = spec.hosts.join(',');
  else options.broadcast = spec.broadcast;
  if (withKey) options.key = KEY;
  let last = '';
  let d;
  const report = () => {
    if (!d) return;
    const members = Object.keys(d.nodes).sort();
    const masters = [];
    if (d.me.isMaster) masters.push(d.broadcast.instanceUuid);
    for (const id of members) if (d.nodes[id].isMaster) masters.push(id);
    masters.sort();
    const master = masters.length === 1 ? masters[0] : masters.length > 1 ? `conflict:${masters.join(',')}` : null;
    const key = JSON.stringify([members, master]);
    if (key !== last) {
      last = key;
      send({ type: 'state', t: now(), members, master });
    }
  };
  d = new Discover(options, (err) => {
    if (err) send({ type: 'error', message: String(err) });
    else send({ type: 'listening', t: now() });
    report();
  });
  // Where it really sends, checked by run.js before it goes on.
  send({ type: 'ready', pid: process.pid, id: d.broadcast.instanceUuid });
  for (const e of ['added', 'removed', 'master', 'demotion', 'helloReceived', 'check']) d.on(e, report);
  d.on('promotion', () => {
    send({ type: 'promotion', t: now() });
    report();
  });
  d.on('error', (err) => send({ type: 'error', message: String(err) }));
  return {
    destinations: () => d.broadcast.destination.map((x) => `${x.address}:${x.port || DISCOVER_PORT}`),
    leave: () => d.stop(),
    recv(event) {
      d.join(event, onBenchMessage);
    },
    onPing(handler) {
      d.join('ping', (data, obj) => handler('ping', data, obj.iid));
      d.join('pong', (data, obj) => handler('pong', data, obj.iid));
    },
    // Broadcast: in the 2-node runs the only other node receives it.
    sendTo: (event, data) => d.send(event, data),
    flush: () => new Promise((resolve) => setImmediate(resolve)),
  };
}

// ---------------------------------------------------------------------------------------
// Plain TCP: newline-delimited JSON for JSON values, length-prefixed frames for Buffers
// (a 0xff byte, then a 4-byte length); tcp-gcm: every frame is AES-128-GCM sealed
// (4-byte length, ciphertext, 16-byte tag; 96-bit counter nonces, one key per direction
// from an ephemeral P-256 ECDH exchange and HKDF-SHA256 when the connection opens).

function tcpSystem(gcm) {
  const peers = new Map(); // ip -> Link
  const handlers = { ping: null };

  class Link {
    constructor(socket, initiator) {
      this.socket = socket;
      this.initiator = initiator;
      this.buf = Buffer.alloc(0);
      this.ready = new Promise((resolve) => (this.onReady = resolve));
      this.sendNonce = 0n;
      this.recvNonce = 0n;
      socket.setNoDelay(true);
      socket.on('data', (chunk) => this.data(chunk));
      socket.on('error', () => {});
      if (gcm) {
        this.ecdh = crypto.createECDH('prime256v1');
        const pub = this.ecdh.generateKeys();
        socket.write(Buffer.concat([Buffer.from([pub.length]), pub]));
      } else {
        this.onReady();
      }
    }

    data(chunk) {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      let off = 0;
      const b = this.buf;
      while (off < b.length) {
        if (gcm && !this.keys) {
          if (b.length - off < 1 || b.length - off < 1 + b[off]) break;
          const theirs = b.subarray(off + 1, off + 1 + b[off]);
          off += 1 + b[off];
          const secret = this.ecdh.computeSecret(theirs);
          const okm = Buffer.from(crypto.hkdfSync('sha256', secret, Buffer.alloc(0), 'tcp-gcm', 32));
          const a = okm.subarray(0, 16);
          const c = okm.subarray(16, 32);
          this.keys = this.initiator ? { tx: a, rx: c } : { tx: c, rx: a };
          this.onReady();
          continue;
        }
        if (gcm) {
          if (b.length - off < 4) break;
          const len = b.readUInt32BE(off);
          if (b.length - off < 4 + len) break;
          const frame = b.subarray(off + 4, off + 4 + len);
          off += 4 + len;
          this.frame(this.open(frame));
        } else if (b[off] === 0xff) {
          if (b.length - off < 5) break;
          const len = b.readUInt32BE(off + 1);
          if (b.length - off < 5 + len) break;
          this.deliver(b.subarray(off + 5, off + 5 + len));
          off += 5 + len;
        } else {
          const nl = b.indexOf(10, off);
          if (nl < 0) break;
          this.deliver(JSON.parse(b.toString('utf8', off, nl)));
          off = nl + 1;
        }
      }
      this.buf = off === b.length ? Buffer.alloc(0) : b.subarray(off);
    }

    nonce(n) {
      const iv = Buffer.alloc(12);
      iv.writeBigUInt64BE(n, 4);
      return iv;
    }

    seal(plain) {
      const cipher = crypto.createCipheriv('aes-128-gcm', this.keys.tx, this.nonce(this.sendNonce++));
      const body = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      return Buffer.concat([head, body]);
    }

    open(frame) {
      const decipher = crypto.createDecipheriv('aes-128-gcm', this.keys.rx, this.nonce(this.recvNonce++));
      decipher.setAuthTag(frame.subarray(frame.length - 16));
      return Buffer.concat([decipher.update(frame.subarray(0, frame.length - 16)), decipher.final()]);
    }

    // A decrypted frame: a type byte (0 JSON, 1 binary), then the event name line, then data.
    frame(plain) {
      if (plain[0] === 1) this.deliver(plain.subarray(1));
      else this.deliver(JSON.parse(plain.toString('utf8', 1)));
    }

    // Messages are { e: event, d: data } for JSON; binary frames are 'bench' Buffers.
    deliver(msg) {
      if (Buffer.isBuffer(msg)) return onBenchMessage(msg);
      if (msg.e === 'bench') return onBenchMessage(msg.d);
      if (handlers.ping) handlers.ping(msg.e, msg.d, this.ip);
    }

    write(event, data) {
      let out;
      if (Buffer.isBuffer(data)) {
        if (gcm) {
          out = this.seal(Buffer.concat([Buffer.from([1]), data]));
        } else {
          const head = Buffer.alloc(5);
          head[0] = 0xff;
          head.writeUInt32BE(data.length, 1);
          this.socket.write(head);
          return this.socket.write(data);
        }
      } else {
        const json = JSON.stringify({ e: event, d: data });
        out = gcm ? this.seal(Buffer.from(`\0${json}`)) : `${json}\n`;
      }
      return this.socket.write(out);
    }
  }

  const server = net.createServer((socket) => {
    const link = new Link(socket, false);
    link.ip = socket.remoteAddress;
    // The connecting side's address is the host it runs on (each host has one address).
    peers.set(link.ip, link);
  });
  server.listen(TCP_PORT, spec.ip, () => send({ type: 'listening', t: now() }));
  send({ type: 'ready', pid: process.pid, id: spec.ip });

  return {
    async connect(ips) {
      const t0 = now();
      await Promise.all(
        ips.map(
          (ip) =>
            new Promise((resolve, reject) => {
              const socket = net.connect({ host: ip, port: TCP_PORT, localAddress: spec.ip }, () => {
                const link = new Link(socket, true);
                link.ip = ip;
                peers.set(ip, link);
                link.ready.then(resolve);
              });
              socket.once('error', reject);
            }),
        ),
      );
      return { t0, t1: now() };
    },
    recv() {},
    onPing(handler) {
      handlers.ping = handler;
    },
    sendTo(event, data, target) {
      const link = peers.get(target);
      if (link.write(event, data)) return null;
      return new Promise((resolve) => link.socket.once('drain', resolve));
    },
    flush: (p) => p ?? null,
    async ready(target) {
      await peers.get(target).ready;
    },
  };
}


// ---------------------------------------------------------------------------------------
// Moleculer and js-libp2p find their peers by multicast on every interface they see (their
// options do not name one for everything): the host they run on must have no interface but
// lo and, on namespace hosts, the bridge's eth0 with this run's address. Checked before
// either starts, as run.js checks where node-discover sends.

function onlyBenchInterfaces() {
  const os = require('node:os');
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs) {
      const bridge = !spec.loopback && name === 'eth0' && (a.address === spec.ip || a.address.startsWith('fe80:'));
      const ok = a.internal || bridge;
      if (!ok) throw new Error(`refusing to start: interface ${name} (${a.address}) is not this benchmark's`);
    }
  }
}

// The lowest id of the members and itself: neither system elects a master, so the benchmark
// does what a user of either would, and the formation tables compare membership.
const lowest = (self, members) => [self, ...members].sort()[0];

const enc = (value) => Buffer.from(JSON.stringify(value));

// Moleculer 0.15 with its TCP transporter: UDP multicast discovery (239.0.0.0, TTL 1) sent
// only from this host's address, gossip and events over TCP; default timings. A service named
// after the node takes the benchmark's events; `emit` to that group reaches that node alone.
function moleculerSystem() {
  onlyBenchInterfaces();
  const { ServiceBroker } = require('moleculer');
  const id = `n${spec.k}-${process.pid}`;
  const broker = new ServiceBroker({
    nodeID: id,
    namespace: 'espial-bench',
    logger: false,
    transporter: {
      type: 'TCP',
      // useHostname off: every namespace host has the machine's hostname, the address the
      // discovery datagram came from tells them apart. maxPacketSize up from 1 MiB for the
      // 1 MiB Buffers (JSON-serialised).
      options: { udpBindAddress: spec.ip, useHostname: false, maxPacketSize: 8 << 20 },
    },
  });
  let last = '';
  const report = () => {
    const members = broker.registry.nodes
      .list({ onlyAvailable: true, withServices: false })
      .map((n) => n.id)
      .filter((n) => n !== id)
      .sort();
    const key = JSON.stringify(members);
    if (key !== last) {
      last = key;
      send({ type: 'state', t: now(), members, master: lowest(id, members) });
    }
  };
  const handlers = { ping: null };
  broker.createService({
    name: id,
    events: {
      '$node.connected': report,
      '$node.disconnected': report,
      '$node.updated': report,
      bench: (ctx) => onBenchMessage(ctx.params && ctx.params.type === 'Buffer' ? Buffer.from(ctx.params.data) : ctx.params),
      ping: (ctx) => handlers.ping?.('ping', ctx.params, ctx.nodeID),
      pong: (ctx) => handlers.ping?.('pong', ctx.params, ctx.nodeID),
    },
    // The request phase's echo: `call('<node>.rr')` reaches that node alone.
    actions: { rr: (ctx) => ctx.params },
  });
  send({ type: 'ready', pid: process.pid, id });
  broker
    .start()
    .then(() => {
      send({ type: 'listening', t: now() });
      report();
    })
    .catch((err) => send({ type: 'error', message: String(err) }));
  return {
    leave: () => broker.stop(),
    recv() {},
    onPing(handler) {
      handlers.ping = handler;
    },
    sendTo: (event, data, target) => broker.emit(event, data, { groups: [target] }),
    flush: (p) => p,
    serve: () => {},
    call: (data, target) => broker.call(`${target}.rr`, data, { nodeID: target, timeout: 5000 }),
  };
}

// js-libp2p 3: TCP on this host's address, Noise, yamux, identify; peers found by mDNS
// (224.0.0.251:5353 on this host's interfaces, see onlyBenchInterfaces) and dialled when
// found, as its examples do; events by gossipsub (default options: signed messages, flood
// publish), ping-pongs over one direct stream each way.
function libp2pSystem() {
  onlyBenchInterfaces();
  const PING = '/espial-bench/ping/1.0.0';
  const handlers = { ping: null };
  const streams = new Map(); // peer id -> Promise<stream>, for ping-pongs
  let node;
  let id;

  // Newline-delimited JSON on a stream: { e: event, d: data }.
  const readLines = (stream, from) => {
    let buf = '';
    stream.addEventListener('message', (evt) => {
      buf += Buffer.from(evt.data.subarray()).toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        handlers.ping?.(msg.e, msg.d, from);
      }
    });
  };

  const ready = (async () => {
    const { createLibp2p } = await import('libp2p');
    const { tcp } = await import('@libp2p/tcp');
    const { noise } = await import('@chainsafe/libp2p-noise');
    const { yamux } = await import('@libp2p/yamux');
    const { mdns } = await import('@libp2p/mdns');
    const { identify } = await import('@libp2p/identify');
    const { gossipsub } = await import('@libp2p/gossipsub');
    node = await createLibp2p({
      addresses: { listen: [`/ip4/${spec.ip}/tcp/0`] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      peerDiscovery: [mdns()],
      services: { identify: identify(), pubsub: gossipsub() },
      start: false,
    });
    id = node.peerId.toString();
    send({ type: 'ready', pid: process.pid, id });
    let last = '';
    const report = () => {
      const members = node.getPeers().map(String).sort();
      const key = JSON.stringify(members);
      if (key !== last) {
        last = key;
        send({ type: 'state', t: now(), members, master: lowest(id, members) });
      }
    };
    node.addEventListener('peer:discovery', (evt) => {
      node.dial(evt.detail.id).catch(() => {});
    });
    node.addEventListener('peer:connect', report);
    node.addEventListener('peer:disconnect', report);
    node.services.pubsub.addEventListener('message', (evt) => {
      const { topic, data } = evt.detail;
      if (topic !== 'bench') return;
      onBenchMessage(data[0] === 1 ? Buffer.from(data.subarray(1)) : JSON.parse(Buffer.from(data.subarray(1)).toString('utf8')));
    });
    await node.handle(PING, (stream, connection) => {
      const from = connection.remotePeer.toString();
      streams.set(from, Promise.resolve(stream));
      readLines(stream, from);
    });
    await node.start();
    send({ type: 'listening', t: now() });
    report();
  })().catch((err) => send({ type: 'error', message: String(err && err.stack) }));

  const stream = (target) => {
    let s = streams.get(target);
    if (!s) {
      s = node.dialProtocol(node.getPeers().find((p) => p.toString() === target), PING).then((st) => {
        readLines(st, target);
        return st;
      });
      streams.set(target, s);
    }
    return s;
  };

  return {
    leave: () => node.stop(),
    recv: (event) => ready.then(() => node.services.pubsub.subscribe(event)),
    onPing(handler) {
      handlers.ping = handler;
    },
    sendTo(event, data, target) {
      if (event === 'bench') {
        const bytes = Buffer.isBuffer(data) ? Buffer.concat([Buffer.from([1]), data]) : Buffer.concat([Buffer.from([0]), enc(data)]);
        // Refused while the receiver's subscription is on its way: counted as lost.
        return node.services.pubsub.publish('bench', bytes).catch(() => null);
      }
      const line = Buffer.from(`${JSON.stringify({ e: event, d: data })}\n`);
      return stream(target).then((s) => {
        if (!s.send(line)) return s.onDrain();
        return null;
      });
    },
    flush: (p) => p,
  };
}

// ---------------------------------------------------------------------------------------

function bareSystem() {
  send({ type: 'ready', pid: process.pid, id: 'bare' });
  send({ type: 'listening', t: now() });
  setInterval(() => {}, 1000);
  return {};
}

switch (spec.system) {
  case 'espial':
    system = espialSystem();
    break;
  case 'discover':
    system = discoverSystem(false);
    break;
  case 'discover-key':
    system = discoverSystem(true);
    break;
  case 'tcp':
    system = tcpSystem(false);
    break;
  case 'tcp-gcm':
    system = tcpSystem(true);
    break;
  case 'moleculer':
    system = moleculerSystem();
    break;
  case 'libp2p':
    system = libp2pSystem();
    break;
  case 'bare':
    system = bareSystem();
    break;
  default:
    throw new Error(`unknown system ${spec.system}`);
}

// ---------------------------------------------------------------------------------------
// Requests from run.js.

// Sends small JSON messages (or `bytes`-sized Buffers) to `target` as fast as the system
// lets it, for at most `n` messages or `ms` milliseconds, whichever comes first.
async function blast({ target, n, ms, bytes, window }) {
  const payload = bytes ? crypto.randomBytes(bytes) : null;
  const t0 = now();
  let sent = 0;
  const batch = window ?? (bytes ? 4 : 256);
  while (sent < n && now() - t0 < ms) {
    let last = null;
    const end = Math.min(n, sent + batch);
    for (; sent < end; sent++) {
      const p = system.sendTo('bench', payload ?? small(sent), target);
      if (p) last = p;
    }
    await system.flush(last);
  }
  return { sent, t0, t1: now() };
}

// The fire-and-forget pattern: `perTurn` sends per turn of the event loop (setImmediate),
// none awaited, a .catch on each Promise, until `n` are sent.
function forget({ target, n, perTurn }) {
  const t0 = now();
  let sent = 0;
  let failed = 0;
  const onError = () => failed++;
  return new Promise((resolve) => {
    const turn = () => {
      const end = Math.min(n, sent + perTurn);
      for (; sent < end; sent++) {
        const p = system.sendTo('bench', small(sent), target);
        if (p) p.catch(onError);
      }
      if (sent < n) setImmediate(turn);
      else resolve({ sent, t0, t1: now(), failed });
    };
    turn();
  });
}

// Answers pings with pongs, and hands pongs to the ping-pong under way; set up once, on
// both nodes, before any ping is sent (espial only sends an event to nodes that joined it).
let onPong = null;
function setupPings() {
  if (setupPings.done) return;
  setupPings.done = true;
  system.onPing((kind, data, from) => {
    if (kind === 'ping') system.sendTo('pong', data, from);
    else if (onPong) onPong(data);
  });
}

// `n` ping-pongs with `target`, one at a time; a ping with no pong in 200 ms is counted lost.
function pingPong({ target, n }) {
  setupPings();
  return new Promise((resolve) => {
    const rtts = [];
    let seq = 0;
    let sentAt = 0;
    let lost = 0;
    let timer;
    const next = () => {
      clearTimeout(timer);
      if (seq >= n) {
        onPong = null;
        return resolve({ rtts, lost });
      }
      seq++;
      sentAt = now();
      timer = setTimeout(() => {
        lost++;
        next();
      }, 200);
      system.sendTo('ping', { seq, pad: PAD }, target);
    };
    onPong = (data) => {
      if (data.seq === seq) {
        rtts.push(now() - sentAt);
        next();
      }
    };
    next();
  });
}

// Requests and replies (issue 20): `n` requests to `target`'s echo handler. One at a time
// (`window` 1, the ping-pong's pacing) each round trip is timed; with a window, that many
// are kept in flight until `n` are answered or `ms` is up.
async function requestBench({ target, n, window, ms }) {
  const rtts = [];
  let failed = 0;
  let done = 0;
  let started = 0;
  const t0 = now();
  const one = async () => {
    while (started < n && now() - t0 < ms) {
      started++;
      const at = now();
      try {
        await system.call({ seq: started, pad: PAD }, target);
        if (window === 1) rtts.push(now() - at);
        done++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: window }, one));
  return { rtts, done, failed, t0, t1: now() };
}

const requests = {
  destinations: () => (system.destinations ? system.destinations() : null),
  leave: async () => {
    const t = now();
    await system.leave();
    return { t };
  },
  recv: ({ event }) => {
    recv = { count: 0, bytes: 0, first: 0, last: 0, outOfOrder: 0, lastSeq: -1 };
    system.recv(event);
    return true;
  },
  recvStats: () => recv,
  resetRecv: () => {
    recv = { count: 0, bytes: 0, first: 0, last: 0, outOfOrder: 0, lastSeq: -1 };
    return true;
  },
  pongs: () => {
    setupPings();
    return true;
  },
  connect: ({ ips }) => system.connect(ips),
  // Ends the process normally (so that --cpu-prof writes its profile).
  quit: () => {
    setTimeout(() => process.exit(0), 50);
    return true;
  },
  blast,
  forget,
  pingPong,
  serve: () => {
    system.serve();
    return true;
  },
  requestBench,
  // A handful of messages so that the receiver is known to be reachable before timing.
  warmup: async ({ target }) => {
    // (js-libp2p: refused until the receiver's subscription has reached the sender)
    try {
      await system.flush(system.sendTo('bench', small(0), target));
    } catch {
      return false;
    }
    return true;
  },
};

process.on('message', async (msg) => {
  let data;
  try {
    data = await requests[msg.type](msg);
  } catch (err) {
    data = { error: String(err && err.stack) };
  }
  send({ type: 'reply', rid: msg.rid, data });
});

// If run.js goes away, so does this process.
process.on('disconnect', () => process.exit(0));
