'use strict';

// A real DNS server on the namespace test bed: dnsmasq (Debian's dnsmasq-base; .ci/run
// installs it) on one host, answering names from a hosts file that the test rewrites, the
// way a Kubernetes cluster's DNS answers a headless Service with its ready pods' addresses.
// Hosts use it through /etc/netns/<namespace>/resolv.conf, which `ip netns exec` bind-mounts
// over /etc/resolv.conf for every process it starts there (iproute2's documented rule); the
// search domain makes the short name resolve as in a pod (`my-app-headless` →
// `my-app-headless.default.svc.cluster.local`). Everything made here is removed by stop()
// and, should the test die, by the test bed's teardown.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { within, delay } = require('../support.js');

// Kubernetes' search domain for a pod in the `default` namespace.
const SEARCH = 'default.svc.cluster.local';

// A name the server always answers, to know it is up.
const READY = 'espial-dns-ready';

class DnsUnavailable extends Error {}

function dnsmasqPath() {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const p = path.join(dir, 'dnsmasq');
    if (fs.existsSync(p)) return p;
  }
  return null;
}

class Dns {
  /**
   * Starts dnsmasq on host `k` of `bed`, answering `records` ({ name: [addresses] }, short
   * names, completed with the search domain), and points every host of the bed at it.
   * Throws DnsUnavailable if dnsmasq is missing or does not answer.
   */
  static async start(bed, k, records) {
    const binary = dnsmasqPath();
    if (!binary) {
      throw new DnsUnavailable(
        'dnsmasq is not installed (apt-get install -y dnsmasq-base; .ci/run does). ' +
          'Set ESPIAL_SKIP_NETNS=1 to skip the namespace tests.',
      );
    }
    const dns = new Dns(bed, k);
    bed.atDestroy(() => dns.#removeFiles());
    dns.#write(records);
    for (const host of bed.hosts) dns.#useFrom(bed.ns(host));
    const proc = bed.spawnIn(
      bed.ns(k),
      [
        binary,
        '--keep-in-foreground',
        '--conf-file=/dev/null',
        '--no-resolv', // no upstream: nothing leaves the test bed
        '--no-hosts', // only our names, not the machine's /etc/hosts
        `--addn-hosts=${dns.hostsFile}`,
        '--local=/#/', // a name we do not hold is NXDOMAIN, as for a Service with no pods
        `--listen-address=${bed.addr(k)}`,
        '--bind-interfaces',
        '--pid-file=',
        '--user=root',
        '--local-ttl=0',
        '--log-facility=-',
        '--log-queries',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    dns.proc = proc;
    proc.stderr.setEncoding('utf8').on('data', (text) => {
      dns.log = (dns.log + text).slice(-20_000);
    });
    dns.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    // Ready once it answers.
    const name = READY;
    const deadline = Date.now() + 5000;
    for (;;) {
      if (proc.exitCode !== null) throw new DnsUnavailable(`dnsmasq ended at start: ${dns.log}`);
      if (dns.lookup(k, name).length > 0) break;
      if (Date.now() > deadline) {
        await dns.stop();
        throw new DnsUnavailable(`dnsmasq did not answer within 5 s: ${dns.log}`);
      }
      await delay(100);
    }
    return dns;
  }

  constructor(bed, k) {
    this.bed = bed;
    this.host = k;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'espial-dns-'));
    this.hostsFile = path.join(this.dir, 'hosts');
    this.netnsDirs = [];
    this.log = '';
  }

  #write(records) {
    // Always there: what start() asks for to know the server answers.
    const lines = [`${this.bed.addr(this.host)} ${READY}.${SEARCH}`];
    for (const [name, addresses] of Object.entries(records)) {
      for (const a of addresses) lines.push(`${a} ${name}.${SEARCH}`);
    }
    fs.writeFileSync(`${this.hostsFile}.new`, `${lines.join('\n')}\n`);
    fs.renameSync(`${this.hostsFile}.new`, this.hostsFile);
  }

  // `ip netns exec` mounts this over /etc/resolv.conf for processes in namespace `ns`.
  #useFrom(ns) {
    const dir = path.join('/etc/netns', ns);
    fs.mkdirSync(dir, { recursive: true });
    this.netnsDirs.push(dir);
    fs.writeFileSync(
      path.join(dir, 'resolv.conf'),
      `nameserver ${this.bed.addr(this.host)}\nsearch ${SEARCH}\noptions timeout:1 attempts:2\n`,
    );
  }

  /** Replaces every answer with `records` and has dnsmasq read them again (SIGHUP). */
  async update(records) {
    this.#write(records);
    this.proc.kill('SIGHUP');
    // Read again once its log says so.
    const before = this.log.split('read ').length;
    await within(5000, (async () => {
      while (this.log.split('read ').length <= before) await delay(50);
    })(), () => `dnsmasq did not reread its hosts file: ${this.log}`);
  }

  /** What `name` resolves to from host `k` (getent, through the system resolver), sorted. */
  lookup(k, name) {
    try {
      const out = execFileSync('ip', ['netns', 'exec', this.bed.ns(k), 'getent', 'ahostsv4', name], {
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 5000,
      }).toString();
      return [...new Set(out.split('\n').filter(Boolean).map((l) => l.split(/\s+/)[0]))].sort();
    } catch {
      return [];
    }
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      await within(5000, this.exited, () => `dnsmasq still running after SIGTERM: ${this.log}`);
    }
    this.#removeFiles();
  }

  #removeFiles() {
    for (const dir of this.netnsDirs) fs.rmSync(dir, { recursive: true, force: true });
    this.netnsDirs = [];
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { Dns, DnsUnavailable, SEARCH };
