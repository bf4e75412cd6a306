'use strict';

// Validation and normalisation of the user's options into the native addon's options.
// Pure apart from reading the host name and interfaces for defaults (and the addon's list of
// error codes, through lib/errors.js), so it can be tested without starting a node. Every mistake is caught here, by name, before anything starts:
// the original silently ignored typos, which made misconfigured nodes hard to spot.

const os = require('node:os');
const { isIPv4 } = require('node:net');
const { espialError } = require('./errors.js');

// How often `network.peers` names are looked up again; not below 100 ms, which would only
// load the resolver.
const DEFAULT_PEERS_RESOLVE_INTERVAL = 5000;
const MIN_PEERS_RESOLVE_INTERVAL = 100;
const MAX_TIMER_MS = 2 ** 31 - 1; // Node's own timer limit; also fits a u32 on the Rust side
// These three mirror the core's bounds (MAX_CLUSTER_NAME, MAX_HOST_NAME, DEFAULT_MAX_METADATA
// in src/core), so that a value the core would refuse is refused here, by option name.
const MAX_CLUSTER_BYTES = 64;
const MAX_HOST_NAME_BYTES = 255;
const MAX_METADATA_BYTES = 64 * 1024;
const MIN_CLUSTER_KEY = 16;
// max_message_size: 16 MiB by default (the core's frame limit), at most 256 MiB.
const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024;
const MAX_MESSAGE_SIZE_LIMIT = 256 * 1024 * 1024;
// max_receive_buffer: bytes received and not yet taken by the application before the node
// stops reading its members' connections (src/driver/inbox.rs); 4 MiB by default.
const DEFAULT_MAX_RECEIVE_BUFFER = 4 * 1024 * 1024;
const MIN_RECEIVE_BUFFER = 64 * 1024;
const MAX_RECEIVE_BUFFER_LIMIT = 1024 * 1024 * 1024;
// max_unacked_bytes: custom event bytes sent to one node and not yet acknowledged, kept for
// replay on its next connection, above which send() waits (src/core/sessions.rs); 16 MiB,
// above the connection's own send queue (8 MiB), so that a target that keeps up never makes
// send() wait on acknowledgements.
const DEFAULT_MAX_UNACKED_BYTES = 16 * 1024 * 1024;
const MIN_UNACKED_BYTES = 64 * 1024;
const MAX_UNACKED_BYTES_LIMIT = 1024 * 1024 * 1024;
// master_quorum counts nodes; any bound is arbitrary, this one fits a u32 on the Rust side.
const MAX_QUORUM = 2 ** 31 - 1;

const TOP_LEVEL = [
  'network',
  'cluster',
  'cluster_key',
  'master_eligible',
  'master_election_timeout',
  'master_polling_frequency',
  'master_quorum',
  'send_presence_frequency',
  'metadata',
  'connection_filter_timeout',
  'max_message_size',
  'max_receive_buffer',
  'max_unacked_bytes',
];
const NETWORK = [
  'port',
  'address',
  'host_name',
  'subnets',
  'multicast',
  'multicast_address',
  'multicast_port',
  'multicast_interface',
  'multicast_ttl',
  'peers',
  'peers_resolve_interval',
];
const ADDRESS = ['local'];
const ALL_NAMES = [
  ...TOP_LEVEL,
  ...NETWORK.map((name) => `network.${name}`),
  ...ADDRESS.map((name) => `network.address.${name}`),
];

function optionError(code, message) {
  return espialError(code, `espial: ${message}`, TypeError);
}

// `subject` says what is wrong: an option by default, or e.g. the argument of set_metadata().
function invalidType(name, expected, value, subject = 'option') {
  return optionError('ERR_INVALID_ARG_TYPE', `${subject} "${name}" must be ${expected} (received ${describe(value)})`);
}

function invalidValue(name, expected, value, subject = 'option') {
  return optionError('ERR_INVALID_ARG_VALUE', `${subject} "${name}" must be ${expected} (received ${describe(value)})`);
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string': {
      const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
      return `string ${JSON.stringify(shown)}`;
    }
    case 'number':
    case 'boolean':
    case 'bigint':
      return `${typeof value} ${String(value)}`;
    case 'object':
      return isPlainObject(value) || !value.constructor ? 'an object' : `an instance of ${value.constructor.name}`;
    default:
      return `type ${typeof value}`;
  }
}

function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// Reads one level of the options tree: absent means "all defaults"; anything but a plain
// object is refused, and so is any name we do not know.
function section(value, path, known) {
  if (value === undefined) return {};
  if (!isPlainObject(value)) {
    if (path) throw invalidType(path, 'a plain object', value);
    throw optionError('ERR_INVALID_ARG_TYPE', `options must be a plain object (received ${describe(value)})`);
  }
  for (const name of Object.keys(value)) {
    if (!known.includes(name)) throw unknownOption(path ? `${path}.${name}` : name);
  }
  return value;
}

function unknownOption(fullName) {
  const guess = closest(fullName);
  const hint = guess ? ` (did you mean "${guess}"?)` : '';
  return optionError('ERR_ESPIAL_UNKNOWN_OPTION', `unknown option "${fullName}"${hint}`);
}

// A typo is the usual reason for an unknown name, so suggest the nearest known one; a known
// name at another level (`port` for `network.port`) is nearer still.
function closest(name) {
  const leaf = name.slice(name.lastIndexOf('.') + 1);
  const elsewhere = ALL_NAMES.find((candidate) => candidate !== name && candidate.endsWith(`.${leaf}`));
  if (elsewhere) return elsewhere;
  const moved = ALL_NAMES.find((candidate) => candidate === leaf && candidate !== name);
  if (moved) return moved;
  let best;
  let bestDistance = 3; // farther than this is not a typo worth pointing at
  for (const candidate of ALL_NAMES) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a, b) {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

function boolean(name, value) {
  if (typeof value !== 'boolean') throw invalidType(name, 'a boolean', value);
  return value;
}

function integer(name, value, min, max, what = 'an integer') {
  const expected = `${what} from ${min} to ${max}`;
  if (typeof value !== 'number') throw invalidType(name, expected, value);
  if (!Number.isInteger(value) || value < min || value > max) throw invalidValue(name, expected, value);
  return value;
}

function port(name, value) {
  return integer(name, value, 1, 65535);
}

function timer(name, value) {
  return integer(name, value, 1, MAX_TIMER_MS, 'a whole number of milliseconds');
}

// Characters no host name may hold, as the native core rules (is_unsafe_char in
// src/core/node.rs): control characters and bidirectional overrides, with which a name could
// forge a log line or rewrite what a terminal shows. Peers refuse such a name.
const UNSAFE_CHAR = /[\p{Cc}\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

function hostName(name, value) {
  const expected = `a string of 1 to ${MAX_HOST_NAME_BYTES} bytes (UTF-8) with no control characters`;
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < 1 || bytes > MAX_HOST_NAME_BYTES || UNSAFE_CHAR.test(value)) throw invalidValue(name, expected, value);
  return value;
}

function firstOctet(address) {
  return Number(address.slice(0, address.indexOf('.')));
}

// An address a peer can reach us at: not 0.0.0.0, not multicast, not class E / broadcast.
function unicastAddress(name, value) {
  const expected = 'a unicast IPv4 address in dotted form, like "192.168.1.10"';
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  if (!isIPv4(value) || value === '0.0.0.0' || firstOctet(value) >= 224) {
    throw invalidValue(name, expected, value);
  }
  return value;
}

function multicastAddress(name, value) {
  const expected = 'an IPv4 multicast address (224.0.0.0 to 239.255.255.255)';
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  if (!isIPv4(value) || firstOctet(value) < 224 || firstOctet(value) > 239) {
    throw invalidValue(name, expected, value);
  }
  return value;
}

function arrayOf(name, value, item) {
  if (!Array.isArray(value)) throw invalidType(name, 'an array', value);
  return value.map((entry, i) => item(`${name}[${i}]`, entry));
}

function subnet(name, value) {
  const expected = 'an IPv4 address in dotted form (its /24 is scanned)';
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  if (!isIPv4(value)) throw invalidValue(name, expected, value);
  return value;
}

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

function isHost(host) {
  if (isIPv4(host)) return true;
  // All digits and dots but not IPv4 ("10.0.0.256") is a mistyped address, not a name.
  if (/^[0-9.]*$/.test(host) || host.length > 253) return false;
  return host.split('.').every((label) => HOST_LABEL.test(label));
}

// "host:port" where host is a dotted IPv4 address or a DNS name; the native side resolves it.
function peer(name, value) {
  const expected = 'a "host:port" string, like "10.0.0.5:27272"';
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  const colon = value.lastIndexOf(':');
  const host = value.slice(0, colon);
  const portText = value.slice(colon + 1);
  const portNumber = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : 0;
  if (colon < 1 || !isHost(host) || portNumber < 1 || portNumber > 65535) throw invalidValue(name, expected, value);
  return value;
}

function clusterName(name, value) {
  const expected = `a string of 1 to ${MAX_CLUSTER_BYTES} bytes (UTF-8)`;
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < 1 || bytes > MAX_CLUSTER_BYTES) throw invalidValue(name, expected, value);
  return value;
}

// The key is a secret: errors say what was wrong with it, never what it was.
function clusterKey(name, value) {
  const expected = `a string of at least ${MIN_CLUSTER_KEY} characters or a Buffer of at least ${MIN_CLUSTER_KEY} bytes`;
  // Given but empty is most likely a secret that did not arrive (an unset environment
  // variable), not a wish for an open cluster: say so rather than run without a key.
  const empty = value === undefined || value === null || value === '' || (value instanceof Uint8Array && value.byteLength === 0);
  if (empty) {
    const what = value === '' ? 'an empty string' : value instanceof Uint8Array ? 'an empty Buffer' : String(value);
    throw optionError(
      'ERR_INVALID_ARG_VALUE',
      `option "${name}" was given but is ${what}; set it to ${expected}, or remove the option to run without a key`,
    );
  }
  if (typeof value === 'string') {
    if (value.length < MIN_CLUSTER_KEY) {
      throw optionError('ERR_INVALID_ARG_VALUE', `option "${name}" must be ${expected} (received a string of ${value.length} characters; \`npx espial keygen\` makes a random key)`);
    }
    return Buffer.from(value, 'utf8');
  }
  if (value instanceof Uint8Array) {
    if (value.byteLength < MIN_CLUSTER_KEY) {
      throw optionError('ERR_INVALID_ARG_VALUE', `option "${name}" must be ${expected} (received ${value.byteLength} bytes; \`npx espial keygen\` makes a random key)`);
    }
    // A copy, so that changing the caller's buffer later cannot change a running node's key.
    return Buffer.from(value);
  }
  throw invalidType(name, expected, value);
}

// Metadata travels as JSON and every node must see exactly what was given, so refuse
// anything JSON would silently drop or change (undefined, functions, NaN, Dates, Maps, …).
// Used for the `metadata` option and for set_metadata(), whose `subject` differs.
function metadata(name, value, subject = 'option') {
  if (!isPlainObject(value)) throw invalidType(name, 'a plain object of JSON values', value, subject);
  checkJson(name, value, new Set(), subject);
  const json = JSON.stringify(value);
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > MAX_METADATA_BYTES) {
    throw optionError(
      'ERR_INVALID_ARG_VALUE',
      `${subject} "${name}" must be at most ${MAX_METADATA_BYTES} bytes as JSON (received ${bytes} bytes)`,
    );
  }
  return json;
}

function checkJson(path, value, ancestors, subject) {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalidValue(path, 'a JSON value (a finite number)', value, subject);
    return;
  }
  const isArray = Array.isArray(value);
  if (!isArray && !isPlainObject(value)) {
    throw invalidValue(
      path,
      'a JSON value (null, boolean, finite number, string, array or plain object)',
      value,
      subject,
    );
  }
  if (ancestors.has(value)) throw invalidValue(path, 'JSON-serialisable, without circular references', value, subject);
  ancestors.add(value);
  if (isArray) {
    // An index loop, not forEach, so that holes are seen (JSON would turn them into null).
    for (let i = 0; i < value.length; i++) checkJson(`${path}[${i}]`, value[i], ancestors, subject);
  } else {
    for (const key of Object.keys(value)) checkJson(`${path}.${key}`, value[key], ancestors, subject);
  }
  ancestors.delete(value);
}

/**
 * Checks the argument of set_metadata() exactly like the `metadata` option.
 * @param {unknown} value
 * @returns {string} its JSON text
 * @throws {TypeError} naming `metadata` (or the offending part of it), with `code` set
 */
function metadataJson(value) {
  return metadata('metadata', value, 'set_metadata():');
}

function given(value, fallback, check, name) {
  return value === undefined ? fallback : check(name, value);
}

// Same rule as the original (the `ip` package): the first external IPv4 address, else loopback.
function defaultLocalAddress(interfaces = os.networkInterfaces()) {
  for (const addresses of Object.values(interfaces)) {
    for (const entry of addresses || []) {
      // Node 18.0–18.3 reported the family as a number.
      if ((entry.family === 'IPv4' || entry.family === 4) && !entry.internal) return entry.address;
    }
  }
  return '127.0.0.1';
}

/**
 * Checks the user's options and fills in the defaults.
 * @param {object} [options] the options given to `espial(options)`
 * @returns {object} the NativeOptions for the addon
 * @throws {TypeError} naming the offending option, with `code` set
 */
function normalizeOptions(options) {
  // The original accepted a missing or null options object.
  const top = section(options === null ? undefined : options, '', TOP_LEVEL);
  const network = section(top.network, 'network', NETWORK);
  const address = section(network.address, 'network.address', ADDRESS);

  const local =
    address.local === undefined ? defaultLocalAddress() : unicastAddress('network.address.local', address.local);

  const native = {
    port: given(network.port, 27272, port, 'network.port'),
    address: local,
    hostName: given(network.host_name, os.hostname(), hostName, 'network.host_name'),
    multicast: given(network.multicast, true, boolean, 'network.multicast'),
    multicastAddress: given(network.multicast_address, '239.255.27.27', multicastAddress, 'network.multicast_address'),
    multicastPort: given(network.multicast_port, 27272, port, 'network.multicast_port'),
    multicastInterface: given(network.multicast_interface, local, unicastAddress, 'network.multicast_interface'),
    multicastTtl: given(network.multicast_ttl, 1, (n, v) => integer(n, v, 0, 255), 'network.multicast_ttl'),
    cluster: given(top.cluster, 'espial', clusterName, 'cluster'),
    metadata: given(top.metadata, '{}', metadata, 'metadata'),
    peers: given(network.peers, [], (n, v) => arrayOf(n, v, peer), 'network.peers'),
    peersResolveInterval: given(
      network.peers_resolve_interval,
      DEFAULT_PEERS_RESOLVE_INTERVAL,
      (n, v) => integer(n, v, MIN_PEERS_RESOLVE_INTERVAL, MAX_TIMER_MS, 'a whole number of milliseconds'),
      'network.peers_resolve_interval',
    ),
    subnets: given(network.subnets, [local], (n, v) => arrayOf(n, v, subnet), 'network.subnets'),
    masterEligible: given(top.master_eligible, true, boolean, 'master_eligible'),
    masterElectionTimeout: given(top.master_election_timeout, 1000, timer, 'master_election_timeout'),
    masterPollingFrequency: given(top.master_polling_frequency, 5000, timer, 'master_polling_frequency'),
    // 0 = no quorum: a lone eligible node may be master (the original's behaviour).
    masterQuorum: given(top.master_quorum, 0, (n, v) => integer(n, v, 0, MAX_QUORUM), 'master_quorum'),
    sendPresenceFrequency: given(top.send_presence_frequency, 400, timer, 'send_presence_frequency'),
    connectionFilterTimeout: given(top.connection_filter_timeout, 5000, timer, 'connection_filter_timeout'),
    maxMessageSize: given(
      top.max_message_size,
      DEFAULT_MAX_MESSAGE_SIZE,
      (n, v) => integer(n, v, 1, MAX_MESSAGE_SIZE_LIMIT, 'a whole number of bytes'),
      'max_message_size',
    ),
    maxReceiveBuffer: given(
      top.max_receive_buffer,
      DEFAULT_MAX_RECEIVE_BUFFER,
      (n, v) => integer(n, v, MIN_RECEIVE_BUFFER, MAX_RECEIVE_BUFFER_LIMIT, 'a whole number of bytes'),
      'max_receive_buffer',
    ),
    maxUnackedBytes: given(
      top.max_unacked_bytes,
      DEFAULT_MAX_UNACKED_BYTES,
      (n, v) => integer(n, v, MIN_UNACKED_BYTES, MAX_UNACKED_BYTES_LIMIT, 'a whole number of bytes'),
      'max_unacked_bytes',
    ),
  };
  // A cluster_key that is present but undefined counts as given: `process.env.X` of an unset
  // variable must not quietly run an open cluster.
  if (Object.hasOwn(top, 'cluster_key')) native.clusterKey = clusterKey('cluster_key', top.cluster_key);
  return native;
}

/**
 * Turns the addon's node info into the public node object the original handed out.
 * A fresh object every time; index.js builds one per change of a member and shares it.
 */
function toPublicNode(info) {
  const node = { id: info.id, host_name: info.hostName, ip: info.ip, port: info.port };
  // A node not admitted by both ends (the filter's candidate, a node that refused this one)
  // comes without metadata: it never crossed the connection.
  if (info.metadata != null) node.metadata = parseMetadata(info.metadata);
  return node;
}

/**
 * A node's metadata as an object. What a peer sends was checked in Rust (a JSON object
 * within max_metadata, or the connection is closed); should anything else ever get this far,
 * the node gets `{}` rather than an exception thrown in the application's process.
 */
function parseMetadata(json) {
  let value;
  try {
    value = JSON.parse(json);
  } catch {
    return {};
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : {};
}

module.exports = {
  normalizeOptions,
  metadataJson,
  toPublicNode,
  defaultLocalAddress,
  describe,
  MAX_METADATA_BYTES,
};
