'use strict';

// An observer given no --port (`espial members`, `watch`, `request`) takes a free port
// number, for TCP and for UDP (its probe socket takes the same number): CI once failed
// with the number free on TCP and taken on UDP (ERR_ESPIAL_BIND, EADDRINUSE). Each run is
// a network namespace of its own (`unshare -n`, root) whose ephemeral range is four ports,
// three of them held on UDP: the observer must start (and, alone, find no node). Without
// the UDP check it fails three runs in four; five runs.

const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const HOLD = `
const dgram = require('node:dgram');
for (const port of [40000, 40001, 40002]) dgram.createSocket('udp4').bind(port, '127.0.0.1');
setTimeout(() => process.exit(0), 15000);
`;

const SH = `ip link set lo up && sysctl -qw net.ipv4.ip_local_port_range="40000 40003" || exit 9
"$NODE" -e "$HOLD" & holder=$!
sleep 0.5
"$NODE" "$CLI" members --interface 127.0.0.1 --peers 127.0.0.1:1 --wait 300
status=$?
kill $holder
exit $status`;

test('an observer with no --port takes a number free on UDP too', () => {
  const cli = path.join(__dirname, '..', 'bin', 'espial.js');
  for (let run = 0; run < 5; run++) {
    const r = spawnSync('unshare', ['-n', 'sh', '-c', SH], {
      env: { ...process.env, NODE: process.execPath, HOLD, CLI: cli },
      encoding: 'utf8',
      timeout: 30000,
    });
    const out = `${r.stdout}${r.stderr}`;
    assert.notEqual(r.status, 9, `run ${run}: could not set up the namespace: ${out}`);
    assert.doesNotMatch(out, /ERR_ESPIAL_BIND|cannot bind|cannot listen/, `run ${run}: ${out}`);
    // Alone, the observer finds no node: exit 1 with that said.
    assert.equal(r.status, 1, `run ${run}: ${out}`);
    assert.match(out, /: 0 nodes/, `run ${run}: ${out}`);
    assert.match(out, /observer \S+ on 127\.0\.0\.1:40003,/, `run ${run}: ${out}`);
  }
});
