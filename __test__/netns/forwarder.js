'use strict';

// A port-forwarding proxy like docker-proxy, run on a test bed host:
//   node forwarder.js <listen ip> <listen port> <target ip> <target port>
// forwards TCP connections and UDP datagrams arriving at the listen address to the target,
// and the answers back. On stdout, JSON lines: { ready: true } once both sockets listen, then
// { tcp: <client address> } for each connection and { udp: <client address> } for each new
// UDP client. It runs until its stdin closes (the test went away) or it is killed.

const net = require('node:net');
const dgram = require('node:dgram');

const [listenIp, listenPort, targetIp, targetPort] = process.argv.slice(2);
const family = net.isIPv6(listenIp) ? 'udp6' : 'udp4';
const targetFamily = net.isIPv6(targetIp) ? 'udp6' : 'udp4';
const say = (msg) => process.stdout.write(`${JSON.stringify(msg)}\n`);
// Bounded: a test has a handful of peers; past this the oldest client's socket is closed.
const MAX_UDP_CLIENTS = 64;

const server = net.createServer((client) => {
  say({ tcp: client.remoteAddress });
  const upstream = net.connect({ host: targetIp, port: Number(targetPort) });
  client.pipe(upstream).pipe(client);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end).on('close', end);
  upstream.on('error', end).on('close', end);
});

const udp = dgram.createSocket(family);
const clients = new Map(); // "ip|port" -> socket towards the target
udp.on('message', (msg, from) => {
  const key = `${from.address}|${from.port}`;
  let out = clients.get(key);
  if (!out) {
    if (clients.size >= MAX_UDP_CLIENTS) {
      const [oldest, socket] = clients.entries().next().value;
      socket.close();
      clients.delete(oldest);
    }
    say({ udp: from.address });
    out = dgram.createSocket(targetFamily);
    out.on('message', (answer) => udp.send(answer, from.port, from.address));
    out.on('error', () => {});
    clients.set(key, out);
  }
  out.send(msg, Number(targetPort), targetIp);
});

let listening = 0;
const ready = () => {
  listening += 1;
  if (listening === 2) say({ ready: true });
};
server.listen(Number(listenPort), listenIp, ready);
udp.bind(Number(listenPort), listenIp, ready);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
