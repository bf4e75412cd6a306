'use strict';

// Shared by the tests that start real nodes. Every node stays on loopback, and each test
// gets its own cluster name and multicast port so concurrent test files never meet.

const crypto = require('node:crypto');

const WAIT_MS = 10_000;

// Ports drawn from a range few services use; distinct within one call.
function randomPorts(count) {
  const ports = new Set();
  while (ports.size < count) ports.add(20000 + crypto.randomInt(30000));
  return [...ports];
}

function uniqueCluster() {
  return `test-${crypto.randomBytes(6).toString('hex')}`;
}

// Options for one node of a test cluster on 127.0.0.1.
function loopbackOptions({ port, multicastPort, cluster, ...rest }) {
  return {
    network: {
      port,
      address: { local: '127.0.0.1' },
      multicast_interface: '127.0.0.1',
      multicast_port: multicastPort,
    },
    cluster,
    ...rest,
  };
}

// Resolves with the arguments of the first `event` for which `accept(...args)` is true.
// Rejects on an `error` event (unless that is what it waits for) or after `ms`, naming what
// it was waiting for.
function waitFor(emitter, event, what, accept = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      if (!accept(...args)) return;
      cleanup();
      resolve(args);
    };
    const onError = (err) => {
      cleanup();
      reject(new Error(`error while waiting for ${what}: ${err.message} (${err.code})`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    function cleanup() {
      clearTimeout(timer);
      emitter.off(event, onEvent);
      emitter.off('error', onError);
    }
    emitter.on(event, onEvent);
    if (event !== 'error') emitter.on('error', onError);
  });
}

module.exports = { WAIT_MS, randomPorts, uniqueCluster, loopbackOptions, waitFor };
