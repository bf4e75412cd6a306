'use strict';

// Option checking is pure JS: these tests run without the native addon.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const os = require('node:os');
const { normalizeOptions, metadataJson, toPublicNode, defaultLocalAddress } = require('../lib/options.js');

// Asserts that `options` is refused with a TypeError carrying `code` and naming `name`.
function rejects(options, name, code) {
  assert.throws(
    () => normalizeOptions(options),
    (err) => {
      assert.ok(err instanceof TypeError, `expected a TypeError, got ${err}`);
      assert.equal(err.code, code);
      assert.ok(err.message.includes(`"${name}"`), `message should name "${name}": ${err.message}`);
      return true;
    },
  );
}

test('an unknown top-level option is refused by name', () => {
  rejects({ master_eligble: true }, 'master_eligble', 'ERR_ESPIAL_UNKNOWN_OPTION');
});

test('an unknown nested option is refused with its full path', () => {
  rejects({ network: { prot: 27272 } }, 'network.prot', 'ERR_ESPIAL_UNKNOWN_OPTION');
  rejects({ network: { address: { global: '0.0.0.0' } } }, 'network.address.global', 'ERR_ESPIAL_UNKNOWN_OPTION');
});

test('an unknown option close to a known one suggests it', () => {
  assert.throws(() => normalizeOptions({ network: { prot: 1 } }), {
    message: 'espial: unknown option "network.prot" (did you mean "network.port"?)',
  });
});

test('an option given at the wrong level suggests where it belongs', () => {
  assert.throws(() => normalizeOptions({ port: 27272 }), {
    name: 'TypeError',
    code: 'ERR_ESPIAL_UNKNOWN_OPTION',
    message: 'espial: unknown option "port" (did you mean "network.port"?)',
  });
  assert.throws(() => normalizeOptions({ peers: ['127.0.0.1:27272'] }), {
    message: 'espial: unknown option "peers" (did you mean "network.peers"?)',
  });
  assert.throws(() => normalizeOptions({ network: { cluster: 'a' } }), {
    message: 'espial: unknown option "network.cluster" (did you mean "cluster"?)',
  });
});

test('ports must be integers from 1 to 65535', () => {
  rejects({ network: { port: '27272' } }, 'network.port', 'ERR_INVALID_ARG_TYPE');
  rejects({ network: { port: 70000 } }, 'network.port', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { port: 0 } }, 'network.port', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { port: 27272.5 } }, 'network.port', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { multicast_port: -1 } }, 'network.multicast_port', 'ERR_INVALID_ARG_VALUE');
});

test('addresses must be unicast IPv4 or IPv6 (the local one may be "::" or "0.0.0.0")', () => {
  rejects({ network: { address: { local: 'localhost' } } }, 'network.address.local', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { address: { local: '10.0.0.256' } } }, 'network.address.local', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { address: { local: '239.1.1.1' } } }, 'network.address.local', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { address: { local: 'ff02::1' } } }, 'network.address.local', 'ERR_INVALID_ARG_VALUE');
  // Link-local IPv6 needs a zone, which member lists and beacons do not carry.
  rejects({ network: { address: { local: 'fe80::1' } } }, 'network.address.local', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { address: { local: '[::1]' } } }, 'network.address.local', 'ERR_INVALID_ARG_VALUE');
  assert.equal(normalizeOptions({ network: { address: { local: '0.0.0.0' } } }).address, '0.0.0.0');
  rejects({ network: { address: { local: 127001 } } }, 'network.address.local', 'ERR_INVALID_ARG_TYPE');
  rejects({ network: { multicast_interface: '::1' } }, 'network.multicast_interface', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { subnets: ['10.0.0'] } }, 'network.subnets[0]', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { subnets: '10.0.0.0' } }, 'network.subnets', 'ERR_INVALID_ARG_TYPE');
});

test('multicast_address must be in 224.0.0.0/4', () => {
  rejects({ network: { multicast_address: '192.168.1.1' } }, 'network.multicast_address', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { multicast_address: '240.0.0.1' } }, 'network.multicast_address', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { multicast_address: 'group' } }, 'network.multicast_address', 'ERR_INVALID_ARG_VALUE');
  assert.equal(normalizeOptions({ network: { multicast_address: '224.0.0.1' } }).multicastAddress, '224.0.0.1');
  assert.equal(normalizeOptions({ network: { multicast_address: '239.255.255.255' } }).multicastAddress, '239.255.255.255');
});

test('metadata must be a plain object of JSON values', () => {
  rejects({ metadata: 'role=web' }, 'metadata', 'ERR_INVALID_ARG_TYPE');
  rejects({ metadata: [1, 2] }, 'metadata', 'ERR_INVALID_ARG_TYPE');
  rejects({ metadata: new Map() }, 'metadata', 'ERR_INVALID_ARG_TYPE');
  rejects({ metadata: { started: new Date() } }, 'metadata.started', 'ERR_INVALID_ARG_VALUE');
  rejects({ metadata: { load: NaN } }, 'metadata.load', 'ERR_INVALID_ARG_VALUE');
  rejects({ metadata: { big: 1n } }, 'metadata.big', 'ERR_INVALID_ARG_VALUE');
  rejects({ metadata: { a: { b: [1, undefined] } } }, 'metadata.a.b[1]', 'ERR_INVALID_ARG_VALUE');
  rejects({ metadata: { blob: 'x'.repeat(64 * 1024) } }, 'metadata', 'ERR_INVALID_ARG_VALUE');
  const circular = { a: {} };
  circular.a.self = circular;
  rejects({ metadata: circular }, 'metadata.a.self', 'ERR_INVALID_ARG_VALUE');
});

test('timers must be positive integers', () => {
  rejects({ send_presence_frequency: -5 }, 'send_presence_frequency', 'ERR_INVALID_ARG_VALUE');
  rejects({ master_election_timeout: 0 }, 'master_election_timeout', 'ERR_INVALID_ARG_VALUE');
  rejects({ master_polling_frequency: 1.5 }, 'master_polling_frequency', 'ERR_INVALID_ARG_VALUE');
  rejects({ master_polling_frequency: '5000' }, 'master_polling_frequency', 'ERR_INVALID_ARG_TYPE');
  rejects({ master_election_timeout: Infinity }, 'master_election_timeout', 'ERR_INVALID_ARG_VALUE');
});

test('connection_filter_timeout is a positive whole number of milliseconds', () => {
  rejects({ connection_filter_timeout: 0 }, 'connection_filter_timeout', 'ERR_INVALID_ARG_VALUE');
  rejects({ connection_filter_timeout: -1 }, 'connection_filter_timeout', 'ERR_INVALID_ARG_VALUE');
  rejects({ connection_filter_timeout: 2.5 }, 'connection_filter_timeout', 'ERR_INVALID_ARG_VALUE');
  rejects({ connection_filter_timeout: 2 ** 31 }, 'connection_filter_timeout', 'ERR_INVALID_ARG_VALUE');
  rejects({ connection_filter_timeout: NaN }, 'connection_filter_timeout', 'ERR_INVALID_ARG_VALUE');
  rejects({ connection_filter_timeout: '300' }, 'connection_filter_timeout', 'ERR_INVALID_ARG_TYPE');
  rejects({ connection_filter_timeout: null }, 'connection_filter_timeout', 'ERR_INVALID_ARG_TYPE');
  assert.equal(normalizeOptions({ connection_filter_timeout: 1 }).connectionFilterTimeout, 1);
  assert.equal(normalizeOptions({ connection_filter_timeout: 2 ** 31 - 1 }).connectionFilterTimeout, 2 ** 31 - 1);
  assert.equal(normalizeOptions({}).connectionFilterTimeout, 5000);
});

test('master_quorum is a whole number from 0 (off, the default) up', () => {
  rejects({ master_quorum: -1 }, 'master_quorum', 'ERR_INVALID_ARG_VALUE');
  rejects({ master_quorum: 1.5 }, 'master_quorum', 'ERR_INVALID_ARG_VALUE');
  rejects({ master_quorum: NaN }, 'master_quorum', 'ERR_INVALID_ARG_VALUE');
  rejects({ master_quorum: Infinity }, 'master_quorum', 'ERR_INVALID_ARG_VALUE');
  rejects({ master_quorum: 2 ** 31 }, 'master_quorum', 'ERR_INVALID_ARG_VALUE');
  rejects({ master_quorum: '2' }, 'master_quorum', 'ERR_INVALID_ARG_TYPE');
  rejects({ master_quorum: true }, 'master_quorum', 'ERR_INVALID_ARG_TYPE');
  rejects({ master_quorum: null }, 'master_quorum', 'ERR_INVALID_ARG_TYPE');
  assert.equal(normalizeOptions({}).masterQuorum, 0);
  assert.equal(normalizeOptions({ master_quorum: 0 }).masterQuorum, 0);
  assert.equal(normalizeOptions({ master_quorum: 1 }).masterQuorum, 1);
  assert.equal(normalizeOptions({ master_quorum: 3 }).masterQuorum, 3);
  assert.throws(() => normalizeOptions({ master_qorum: 2 }), {
    code: 'ERR_ESPIAL_UNKNOWN_OPTION',
    message: 'espial: unknown option "master_qorum" (did you mean "master_quorum"?)',
  });
});

test('max_unacked_bytes is a whole number of bytes from 64 KiB to 1 GiB, 16 MiB by default', () => {
  rejects({ max_unacked_bytes: 0 }, 'max_unacked_bytes', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_unacked_bytes: 65535 }, 'max_unacked_bytes', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_unacked_bytes: 2 ** 30 + 1 }, 'max_unacked_bytes', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_unacked_bytes: '4mb' }, 'max_unacked_bytes', 'ERR_INVALID_ARG_TYPE');
  assert.equal(normalizeOptions({}).maxUnackedBytes, 16 * 1024 * 1024);
  assert.equal(normalizeOptions({ max_unacked_bytes: 65536 }).maxUnackedBytes, 65536);
  assert.equal(normalizeOptions({ max_unacked_bytes: 2 ** 30 }).maxUnackedBytes, 2 ** 30);
});

test('max_receive_buffer is a whole number of bytes from 64 KiB to 1 GiB, 4 MiB by default', () => {
  rejects({ max_receive_buffer: 0 }, 'max_receive_buffer', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_receive_buffer: 65535 }, 'max_receive_buffer', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_receive_buffer: 65536.5 }, 'max_receive_buffer', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_receive_buffer: 2 ** 30 + 1 }, 'max_receive_buffer', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_receive_buffer: NaN }, 'max_receive_buffer', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_receive_buffer: '4mb' }, 'max_receive_buffer', 'ERR_INVALID_ARG_TYPE');
  assert.equal(normalizeOptions({}).maxReceiveBuffer, 4 * 1024 * 1024);
  assert.equal(normalizeOptions({ max_receive_buffer: 65536 }).maxReceiveBuffer, 65536);
  assert.equal(normalizeOptions({ max_receive_buffer: 2 ** 30 }).maxReceiveBuffer, 2 ** 30);
  assert.throws(() => normalizeOptions({ max_receive_buffer: 1024 }), {
    message: 'espial: option "max_receive_buffer" must be a whole number of bytes from 65536 to 1073741824 (received number 1024)',
  });
});

test('max_message_size is a whole number of bytes from 1 to 256 MiB, 16 MiB by default', () => {
  rejects({ max_message_size: 0 }, 'max_message_size', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_message_size: -1 }, 'max_message_size', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_message_size: 1024.5 }, 'max_message_size', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_message_size: 256 * 1024 * 1024 + 1 }, 'max_message_size', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_message_size: Infinity }, 'max_message_size', 'ERR_INVALID_ARG_VALUE');
  rejects({ max_message_size: '1mb' }, 'max_message_size', 'ERR_INVALID_ARG_TYPE');
  rejects({ max_message_size: 1024n }, 'max_message_size', 'ERR_INVALID_ARG_TYPE');
  assert.equal(normalizeOptions({}).maxMessageSize, 16 * 1024 * 1024);
  assert.equal(normalizeOptions({ max_message_size: 1 }).maxMessageSize, 1);
  assert.equal(normalizeOptions({ max_message_size: 1024 }).maxMessageSize, 1024);
  assert.equal(normalizeOptions({ max_message_size: 256 * 1024 * 1024 }).maxMessageSize, 256 * 1024 * 1024);
  assert.throws(() => normalizeOptions({ max_message_size: 0 }), {
    message: 'espial: option "max_message_size" must be a whole number of bytes from 1 to 268435456 (received number 0)',
  });
  assert.throws(() => normalizeOptions({ max_mesage_size: 1024 }), {
    code: 'ERR_ESPIAL_UNKNOWN_OPTION',
    message: 'espial: unknown option "max_mesage_size" (did you mean "max_message_size"?)',
  });
});

test('a typo of connection_filter_timeout suggests it', () => {
  assert.throws(() => normalizeOptions({ connection_filter_timout: 300 }), {
    code: 'ERR_ESPIAL_UNKNOWN_OPTION',
    message: 'espial: unknown option "connection_filter_timout" (did you mean "connection_filter_timeout"?)',
  });
});

test('set_metadata() is checked like the metadata option, and names metadata', () => {
  const refuses = (value, name, code) =>
    assert.throws(
      () => metadataJson(value),
      (err) => {
        assert.ok(err instanceof TypeError, `expected a TypeError, got ${err}`);
        assert.equal(err.code, code);
        assert.ok(err.message.includes(`"${name}"`), `message should name "${name}": ${err.message}`);
        assert.ok(err.message.includes('set_metadata()'), `message should name set_metadata(): ${err.message}`);
        return true;
      },
    );
  refuses('v=2', 'metadata', 'ERR_INVALID_ARG_TYPE');
  refuses(undefined, 'metadata', 'ERR_INVALID_ARG_TYPE');
  refuses(null, 'metadata', 'ERR_INVALID_ARG_TYPE');
  refuses([1], 'metadata', 'ERR_INVALID_ARG_TYPE');
  refuses({ at: new Date() }, 'metadata.at', 'ERR_INVALID_ARG_VALUE');
  refuses({ a: [1, () => {}] }, 'metadata.a[1]', 'ERR_INVALID_ARG_VALUE');
  // 64 KiB of JSON is the bound: `{"blob":"…"}` is 11 bytes around the string.
  assert.equal(Buffer.byteLength(metadataJson({ blob: 'x'.repeat(64 * 1024 - 11) })), 64 * 1024);
  refuses({ blob: 'x'.repeat(64 * 1024 - 10) }, 'metadata', 'ERR_INVALID_ARG_VALUE');
  // Bytes, not characters: 'é' is two bytes of UTF-8.
  refuses({ blob: 'é'.repeat(32 * 1024) }, 'metadata', 'ERR_INVALID_ARG_VALUE');
  assert.equal(metadataJson({ v: 2, tags: ['a', null] }), '{"v":2,"tags":["a",null]}');
  assert.equal(metadataJson({}), '{}');
});

test('cluster_key must be long enough and is never echoed', () => {
  rejects({ cluster_key: 'hunter2' }, 'cluster_key', 'ERR_INVALID_ARG_VALUE');
  rejects({ cluster_key: Buffer.alloc(15) }, 'cluster_key', 'ERR_INVALID_ARG_VALUE');
  rejects({ cluster_key: 1234567890123456 }, 'cluster_key', 'ERR_INVALID_ARG_TYPE');
  assert.throws(() => normalizeOptions({ cluster_key: 'hunter2' }), (err) => !err.message.includes('hunter2'));
  assert.throws(() => normalizeOptions({ cluster_key: 'hunter2' }), /espial keygen/);
});

test('other wrong types are refused by name', () => {
  rejects({ network: 'eth0' }, 'network', 'ERR_INVALID_ARG_TYPE');
  rejects({ network: { multicast: 'yes' } }, 'network.multicast', 'ERR_INVALID_ARG_TYPE');
  rejects({ master_eligible: 1 }, 'master_eligible', 'ERR_INVALID_ARG_TYPE');
  rejects({ network: { host_name: '' } }, 'network.host_name', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { host_name: 'é'.repeat(128) } }, 'network.host_name', 'ERR_INVALID_ARG_VALUE');
  // Names peers refuse (they could forge a log line or drive a terminal): refused here first.
  for (const unsafe of ['web\n1', 'web\x1b[2J', 'a\u0007', 'x\u007f', 'rtl\u202e', 'c1\u009b']) {
    rejects({ network: { host_name: unsafe } }, 'network.host_name', 'ERR_INVALID_ARG_VALUE');
  }
  rejects({ network: { multicast_ttl: 256 } }, 'network.multicast_ttl', 'ERR_INVALID_ARG_VALUE');
  rejects({ cluster: '' }, 'cluster', 'ERR_INVALID_ARG_VALUE');
  rejects({ cluster: 'x'.repeat(65) }, 'cluster', 'ERR_INVALID_ARG_VALUE');
  rejects({ cluster: 'é'.repeat(33) }, 'cluster', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { peers: ['web-2.internal'] } }, 'network.peers[0]', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { peers: ['10.0.0.5:0'] } }, 'network.peers[0]', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { peers: '10.0.0.5:27272' } }, 'network.peers', 'ERR_INVALID_ARG_TYPE');
  assert.throws(() => normalizeOptions(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
});

test('defaults are the original ones plus ours', () => {
  const local = defaultLocalAddress();
  const expected = {
    port: 27272,
    address: local,
    hostName: os.hostname(),
    multicast: true,
    multicastAddress: '239.255.27.27',
    multicastPort: 27272,
    multicastInterface: local,
    multicastTtl: 1,
    cluster: 'espial',
    metadata: '{}',
    peers: [],
    peersResolveInterval: 5000,
    subnets: [local],
    masterEligible: true,
    masterElectionTimeout: 1000,
    masterPollingFrequency: 5000,
    masterQuorum: 0,
    sendPresenceFrequency: 300,
    connectionFilterTimeout: 5000,
    maxMessageSize: 16 * 1024 * 1024,
    maxReceiveBuffer: 4 * 1024 * 1024,
    maxUnackedBytes: 16 * 1024 * 1024,
    requestTimeout: 10000,
    maxRequests: 1024,
    maxRequestsPerTarget: 256,
    maxHandlerConcurrency: 64,
  };
  assert.deepEqual(normalizeOptions(), expected);
  assert.deepEqual(normalizeOptions(null), expected);
  assert.deepEqual(normalizeOptions({ network: { address: {} } }), expected);
});

test('the local address defaults follow it', () => {
  const native = normalizeOptions({ network: { address: { local: '127.0.0.1' } } });
  assert.equal(native.address, '127.0.0.1');
  assert.equal(native.multicastInterface, '127.0.0.1');
  assert.deepEqual(native.subnets, ['127.0.0.1']);
});

test('the default local address is the first external IPv4 one, else IPv6 one, else loopback', () => {
  const lo = { address: '127.0.0.1', family: 'IPv4', internal: true };
  const v6 = { address: 'fe80::1', family: 'IPv6', internal: false };
  const eth = { address: '10.1.2.3', family: 'IPv4', internal: false };
  assert.equal(defaultLocalAddress({ lo: [lo], eth0: [v6, eth] }), '10.1.2.3');
  assert.equal(defaultLocalAddress({ lo: [lo], eth0: [v6] }), '127.0.0.1');
  assert.equal(defaultLocalAddress({}), '127.0.0.1');
  // An IPv6-only host: its first external IPv6 address that is not link-local.
  const global6 = { address: 'fd00::7', family: 'IPv6', internal: false };
  assert.equal(defaultLocalAddress({ lo: [lo], eth0: [v6, global6] }), 'fd00::7');
  assert.equal(defaultLocalAddress({ eth0: [global6, eth] }), '10.1.2.3', 'IPv4 first');
});

test('valid options pass through', () => {
  const key = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
  const native = normalizeOptions({
    network: {
      port: 30001,
      address: { local: '10.0.0.2' },
      host_name: 'web-1',
      subnets: ['10.0.0.0', '10.0.1.0'],
      multicast: false,
      multicast_address: '239.1.2.3',
      multicast_port: 30002,
      multicast_interface: '10.0.0.2',
      multicast_ttl: 0,
      peers: ['10.0.0.3:30001', 'web-2.internal:30001'],
      peers_resolve_interval: 1500,
    },
    cluster: 'production',
    cluster_key: key,
    master_eligible: false,
    master_election_timeout: 250,
    master_polling_frequency: 1000,
    master_quorum: 2,
    send_presence_frequency: 2000,
    metadata: { role: 'web', weight: 2, tags: ['a', null, true], nested: { x: 1.5 } },
    connection_filter_timeout: 300,
    max_message_size: 1024,
    max_receive_buffer: 65536,
    max_unacked_bytes: 65536,
    request_timeout: 500,
    max_requests: 10,
    max_requests_per_target: 4096,
    max_handler_concurrency: 1,
  });
  assert.deepEqual(native, {
    port: 30001,
    address: '10.0.0.2',
    hostName: 'web-1',
    multicast: false,
    multicastAddress: '239.1.2.3',
    multicastPort: 30002,
    multicastInterface: '10.0.0.2',
    multicastTtl: 0,
    cluster: 'production',
    clusterKey: key,
    metadata: '{"role":"web","weight":2,"tags":["a",null,true],"nested":{"x":1.5}}',
    peers: ['10.0.0.3:30001', 'web-2.internal:30001'],
    peersResolveInterval: 1500,
    subnets: ['10.0.0.0', '10.0.1.0'],
    masterEligible: false,
    masterElectionTimeout: 250,
    masterPollingFrequency: 1000,
    masterQuorum: 2,
    sendPresenceFrequency: 2000,
    connectionFilterTimeout: 300,
    maxMessageSize: 1024,
    maxReceiveBuffer: 65536,
    maxUnackedBytes: 65536,
    requestTimeout: 500,
    maxRequests: 10,
    maxRequestsPerTarget: 4096,
    maxHandlerConcurrency: 1,
  });
  assert.throws(() => normalizeOptions({ max_requests_per_target: 4097 }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => normalizeOptions({ max_requests: 0 }), { code: 'ERR_INVALID_ARG_VALUE' });
  // A copy: changing the caller's buffer later must not change a running node's key.
  assert.notEqual(native.clusterKey, key);
});

test('a cluster_key given but undefined, null or empty is refused, not taken as "no key"', () => {
  // `cluster_key: process.env.ESPIAL_CLUSTER_KEY` with the variable unset must not run an
  // open cluster.
  const unset = {};
  for (const options of [
    { cluster_key: unset.ESPIAL_CLUSTER_KEY },
    { cluster_key: undefined },
    { cluster_key: null },
    { cluster_key: '' },
    { cluster_key: Buffer.alloc(0) },
  ]) {
    rejects(options, 'cluster_key', 'ERR_INVALID_ARG_VALUE');
    assert.throws(() => normalizeOptions(options), /remove the option to run without a key/);
  }
  // Absent is still the original's open cluster.
  assert.equal(normalizeOptions({}).clusterKey, undefined);
  assert.equal('clusterKey' in normalizeOptions({ cluster: 'x' }), false);
});

test('a string cluster_key becomes its UTF-8 bytes', () => {
  const native = normalizeOptions({ cluster_key: 'correct horse battery staple' });
  assert.deepEqual(native.clusterKey, Buffer.from('correct horse battery staple'));
});

test('the caller\'s options object is not modified', () => {
  const options = { network: { port: 30001 } };
  normalizeOptions(options);
  assert.deepEqual(options, { network: { port: 30001 } });
});

test('toPublicNode gives the original node object shape', () => {
  const info = { id: 'abc', hostName: 'web-1', ip: '10.0.0.2', port: 27272, metadata: '{"role":"web"}' };
  const node = toPublicNode(info);
  assert.deepEqual(node, { id: 'abc', host_name: 'web-1', ip: '10.0.0.2', port: 27272, metadata: { role: 'web' } });
  assert.notEqual(toPublicNode(info).metadata, node.metadata, 'each call hands out a fresh object');
});

test('IPv6: local addresses, "::" (dual stack), peers in brackets or bare', () => {
  const native = normalizeOptions({
    network: {
      address: { local: 'fd00::10' },
      multicast: false,
      peers: ['[fd00::5]:30001', '[fd00::6]', 'fd00::7', '10.0.0.8', '[::ffff:10.0.0.9]:5', 'web-2.internal:30001'],
      port: 27000,
    },
  });
  assert.equal(native.address, 'fd00::10');
  // Without a port, a peer is at this node's own network.port.
  assert.deepEqual(native.peers, [
    '[fd00::5]:30001',
    '[fd00::6]:27000',
    '[fd00::7]:27000',
    '10.0.0.8:27000',
    '[::ffff:10.0.0.9]:5',
    'web-2.internal:30001',
  ]);
  // The subnet scan is IPv4 only: nothing is scanned by default next to an IPv6 address.
  assert.deepEqual(native.subnets, []);
  const any = normalizeOptions({ network: { address: { local: '::' }, multicast_interface: '127.0.0.1' } });
  assert.equal(any.address, '::');
  assert.equal(any.multicastAddress, '239.255.27.27', 'listening on "::", IPv4 multicast by default');
  assert.equal(any.multicastInterface, '127.0.0.1');
  assert.deepEqual(any.subnets, []);
  // An IPv6 address with a port but no brackets cannot be told from one without a port.
  rejects({ network: { peers: ['fd00::5:27272:1'] } }, 'network.peers[0]', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { peers: ['[fd00::5]:'] } }, 'network.peers[0]', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { peers: ['[fd00::5'] } }, 'network.peers[0]', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { peers: ['[web-2]:5'] } }, 'network.peers[0]', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { peers: ['[fd00::5]:70000'] } }, 'network.peers[0]', 'ERR_INVALID_ARG_VALUE');
});

test('the subnet scan is IPv4 only, and an IPv6 subnet says so', () => {
  assert.throws(
    () => normalizeOptions({ network: { subnets: ['fd00::'] } }),
    (err) => {
      assert.equal(err.code, 'ERR_INVALID_ARG_VALUE');
      assert.match(err.message, /"network\.subnets\[0\]".*IPv4 only/);
      return true;
    },
  );
});

test('IPv6 multicast: an ff00::/8 group on an interface named or numbered', () => {
  const named = normalizeOptions({ network: { address: { local: 'fd00::10' }, multicast_address: 'ff02::27:27', multicast_interface: 'eth0' } });
  assert.equal(named.multicastAddress, 'ff02::27:27');
  assert.equal(named.multicastInterface, 'eth0');
  const numbered = normalizeOptions({ network: { address: { local: 'fd00::10' }, multicast_address: 'ff05::1', multicast_interface: 3 } });
  assert.equal(numbered.multicastInterface, '3');
  // The group follows a specific IPv6 local address, on the interface holding it.
  const lo = normalizeOptions({ network: { address: { local: '::1' } } });
  assert.equal(lo.multicastAddress, 'ff02::27:27');
  assert.equal(lo.multicastInterface, Object.keys(os.networkInterfaces()).find((n) => os.networkInterfaces()[n].some((e) => e.address === '::1')));
  rejects({ network: { multicast_address: 'ff02::27:27', multicast_interface: '10.0.0.1/24' } }, 'network.multicast_interface', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { multicast_address: 'ff02::27:27', multicast_interface: 'a-name-longer-than-15' } }, 'network.multicast_interface', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { multicast_address: 'ff02::27:27', multicast_interface: 0 } }, 'network.multicast_interface', 'ERR_INVALID_ARG_VALUE');
  rejects({ network: { multicast_address: 'ff02::27:27', multicast_interface: true } }, 'network.multicast_interface', 'ERR_INVALID_ARG_TYPE');
  rejects({ network: { multicast_address: 'fd00::1' } }, 'network.multicast_address', 'ERR_INVALID_ARG_VALUE');
  // An IPv4 group still wants an IPv4 interface address.
  rejects({ network: { multicast_interface: 'eth0' } }, 'network.multicast_interface', 'ERR_INVALID_ARG_VALUE');
  // No interface holds the local address and none is named: say which option to set.
  rejects({ network: { address: { local: 'fd00::99:1' }, multicast_address: 'ff02::27:27' } }, 'network.multicast_interface', 'ERR_INVALID_ARG_VALUE');
  // With multicast off nothing is needed.
  assert.equal(normalizeOptions({ network: { address: { local: 'fd00::99:1' }, multicast: false } }).multicast, false);
});

test('advertise: "ip:port" or "[ipv6]:port" other nodes can dial', () => {
  assert.equal(normalizeOptions({ network: { advertise: '203.0.113.7:30001' } }).advertise, '203.0.113.7:30001');
  assert.equal(normalizeOptions({ network: { advertise: '[2001:db8::7]:30001' } }).advertise, '[2001:db8::7]:30001');
  assert.equal(normalizeOptions({}).advertise, undefined, 'absent by default');
  for (const bad of [
    '203.0.113.7', // a port is needed
    '2001:db8::7', // so are brackets
    '0.0.0.0:1',
    '[::]:1',
    '239.1.1.1:1',
    '[ff02::1]:1',
    '[fe80::1]:1',
    '203.0.113.7:0',
    'web-1.internal:30001', // names are not resolved
    '',
  ]) {
    rejects({ network: { advertise: bad } }, 'network.advertise', 'ERR_INVALID_ARG_VALUE');
  }
  rejects({ network: { advertise: 30001 } }, 'network.advertise', 'ERR_INVALID_ARG_TYPE');
});

test('toPublicNode adds advertised only for a node that set one', () => {
  const info = { id: 'abc', hostName: 'web-1', ip: '10.0.0.2', port: 27272, advertised: '203.0.113.7:30001', metadata: '{}' };
  assert.equal(toPublicNode(info).advertised, '203.0.113.7:30001');
  assert.equal('advertised' in toPublicNode({ ...info, advertised: null }), false);
});

test('network.peers_resolve_interval: a whole number of milliseconds, 100 at least', () => {
  const interval = (v) => normalizeOptions({ network: { peers_resolve_interval: v } }).peersResolveInterval;
  assert.equal(interval(100), 100);
  assert.equal(interval(2 ** 31 - 1), 2 ** 31 - 1);
  for (const bad of [99, 0, -1, 1.5, 2 ** 31, NaN, Infinity]) {
    assert.throws(() => interval(bad), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_VALUE',
      message: /"network\.peers_resolve_interval" must be a whole number of milliseconds from 100 to 2147483647/,
    });
  }
  for (const bad of ['5000', null, true, [5000]]) {
    assert.throws(() => interval(bad), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  }
  // A typo is named, with the option meant.
  assert.throws(() => normalizeOptions({ network: { peers_resolve_intervall: 5000 } }), {
    code: 'ERR_ESPIAL_UNKNOWN_OPTION',
  });
});
