'use strict';

// The benchmark's network: one network namespace per host, each with one veth link to a
// bridge that lives in a namespace of its own (10.88.0.K/24; no route anywhere else, so
// nothing a node sends can leave that bridge). Where namespaces cannot be made, hosts are
// loopback addresses 127.0.0.K, and run.js runs itself inside `unshare -n` (a private
// network namespace whose only interface is lo).

const { execFileSync, spawnSync } = require('node:child_process');

const SUBNET = '10.88.0';

function ip(args, input) {
  return execFileSync('ip', args, { input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 }).toString();
}

class Namespaces {
  constructor(count) {
    this.mode = 'namespaces';
    this.tag = `esb${process.pid}`;
    this.bridgeNs = `${this.tag}br`;
    this.count = count;
    this.created = [];
    this.broadcast = `${SUBNET}.255`;
  }

  hostNs(k) {
    return `${this.tag}h${k}`;
  }

  hostIp(k) {
    return `${SUBNET}.${k}`;
  }

  setup() {
    // Created one by one so that whatever exists is known to cleanup().
    ip(['netns', 'add', this.bridgeNs]);
    this.created.push(this.bridgeNs);
    const bridge = ['link set lo up', 'link add br0 type bridge', 'link set br0 up'];
    for (let k = 1; k <= this.count; k++) {
      const ns = this.hostNs(k);
      ip(['netns', 'add', ns]);
      this.created.push(ns);
      bridge.push(`link add v${k} type veth peer name eth0 netns ${ns}`, `link set v${k} master br0`, `link set v${k} up`);
    }
    ip(['-n', this.bridgeNs, '-batch', '-'], `${bridge.join('\n')}\n`);
    for (let k = 1; k <= this.count; k++) {
      // The multicast route: js-libp2p's mDNS sends without naming an interface (the kernel
      // then needs a route for 224.0.0.251); it, too, leads only onto the bridge.
      const host = [
        'link set lo up',
        `addr add ${this.hostIp(k)}/24 broadcast ${this.broadcast} dev eth0`,
        'link set eth0 up',
        'route add 224.0.0.0/4 dev eth0',
      ];
      ip(['-n', this.hostNs(k), '-batch', '-'], `${host.join('\n')}\n`);
    }
    // The only routes of a host are its own subnet's (and loopback's): checked, not assumed.
    for (let k = 1; k <= this.count; k++) {
      const routes = ip(['-n', this.hostNs(k), '-4', 'route', 'show', 'table', 'all']);
      for (const line of routes.split('\n').filter(Boolean)) {
        if (/^default/.test(line) || !/ dev (lo|eth0)( |$)/.test(line)) {
          throw new Error(`unexpected route in ${this.hostNs(k)}: ${line}`);
        }
      }
    }
  }

  // argv to start a command inside host k.
  wrap(k, argv) {
    return ['ip', ['netns', 'exec', this.hostNs(k), ...argv]];
  }

  cut(k) {
    ip(['-n', this.bridgeNs, 'link', 'set', `v${k}`, 'down']);
  }

  heal(k) {
    ip(['-n', this.bridgeNs, 'link', 'set', `v${k}`, 'up']);
  }

  cleanup() {
    for (const ns of this.created.reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 10_000 });
    this.created = [];
  }
}

class Loopback {
  constructor(count) {
    this.mode = 'loopback';
    this.count = count;
    this.broadcast = null;
  }

  hostIp(k) {
    return `127.0.0.${k}`;
  }

  setup() {}

  wrap(_k, argv) {
    return [argv[0], argv.slice(1)];
  }

  cut() {
    throw new Error('silent loss needs namespaces');
  }

  heal() {}

  cleanup() {}
}

// Namespaces if this process may make them, else null.
function canMakeNamespaces() {
  const probe = `esbprobe${process.pid}`;
  const made = spawnSync('ip', ['netns', 'add', probe], { stdio: 'ignore', timeout: 10_000 });
  if (made.status !== 0) return false;
  spawnSync('ip', ['netns', 'del', probe], { stdio: 'ignore', timeout: 10_000 });
  return true;
}

// Whether this process is in a network namespace whose only interface is lo.
function onlyLoopback() {
  const out = spawnSync('ip', ['-o', 'link', 'show'], { timeout: 10_000 }).stdout?.toString() ?? '';
  const names = out
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(':')[1].trim().split('@')[0]);
  return names.length === 1 && names[0] === 'lo';
}

module.exports = { Namespaces, Loopback, canMakeNamespaces, onlyLoopback };
