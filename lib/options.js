'use strict';

// Validation and normalisation of the user's options into the native addon's options.
// Pure apart from reading the host name and interfaces for defaults (and the addon's list of
// error codes, through lib/errors.js), so it can be tested without starting a node. Every mistake is caught here, by name, before anything starts:
// the original silently ignored typos, which made misconfigured nodes hard to spot.

const os = require('node:os');
const { isIP, isIPv4, isIPv6 } = require('node:net');
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
  'request_timeout',
  'max_requests',
  'max_requests_per_target',
  'max_handler_concurrency',
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
  'advertise',
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

// IPv6 multicast is ff00::/8; link-local unicast fe80::/10 needs a zone, which addresses
// in member lists and beacons do not carry.
function isIPv6Multicast(address) {
  return isIPv6(address) && /^ff/i.test(address);
}

function isIPv6LinkLocal(address) {
  return isIPv6(address) && /^fe[89ab]/i.test(address);
}

function isUnspecified(address) {
  return address === '0.0.0.0' || (isIPv6(address) && /^[0:]+$/.test(address));
}

// An address other nodes can dial: IPv4 or IPv6, unicast, not unspecified, not link-local.
function isDialable(address) {
  if (isIPv4(address)) return address !== '0.0.0.0' && firstOctet(address) < 224;
  return isIPv6(address) && !isUnspecified(address) && !isIPv6Multicast(address) && !isIPv6LinkLocal(address);
}

// network.address.local: where the node listens; "::" (or "0.0.0.0") listens on every
// address (with "::", IPv4 too: dual-stack).
function localAddress(name, value) {
  const expected =
    'a unicast IPv4 or IPv6 address, like "192.168.1.10" or "fd00::10" (not link-local), or "::" to listen on every address';
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  if (!isDialable(value) && !isUnspecified(value)) throw invalidValue(name, expected, value);
  return value;
}

function multicastAddress(name, value) {
  const expected = 'a multicast address: IPv4 224.0.0.0 to 239.255.255.255, or IPv6 ff00::/8 (like "ff02::27:27")';
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  const v4 = isIPv4(value) && firstOctet(value) >= 224 && firstOctet(value) <= 239;
  if (!v4 && !isIPv6Multicast(value)) throw invalidValue(name, expected, value);
  return value;
}

// For an IPv6 group: the interface's name ("eth0") or index (a positive integer), passed on
// as text.
function interfaceName(name, value) {
  const expected = 'for an IPv6 group, an interface name like "eth0" or an interface index (a positive integer)';
  if (typeof value === 'number') return String(integer(name, value, 1, 2 ** 32 - 1, expected));
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(value)) throw invalidValue(name, expected, value);
  return value;
}

// The name of the interface that holds `address`, if any.
function interfaceOf(address, interfaces = os.networkInterfaces()) {
  for (const [name, entries] of Object.entries(interfaces)) {
    if ((entries || []).some((entry) => entry.address === address)) return name;
  }
  return undefined;
}

// "ip:port" or "[ipv6]:port": where other nodes dial this one (network.advertise).
function advertise(name, value) {
  const expected =
    'an "ip:port" string with a unicast address other nodes can dial, like "203.0.113.7:27272" or "[2001:db8::7]:27272"';
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  const parsed = splitHostPort(value);
  if (!parsed || parsed.port === undefined || !isIP(parsed.host) || !isDialable(parsed.host)) {
    throw invalidValue(name, expected, value);
  }
  return joinHostPort(parsed.host, parsed.port);
}

// "host:port", "host", "[v6]:port", "[v6]" or a bare IPv6 address into { host, port }
// (port undefined when absent); null when malformed, e.g. an IPv6 address with a port
// but no brackets, which cannot be told apart from one without.
function splitHostPort(value) {
  if (isIPv6(value)) return { host: value, port: undefined };
  let host;
  let rest;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) return null;
    host = value.slice(1, close);
    if (!isIPv6(host)) return null;
    rest = value.slice(close + 1);
  } else {
    const colon = value.indexOf(':');
    if (colon !== value.lastIndexOf(':')) return null;
    host = colon < 0 ? value : value.slice(0, colon);
    rest = colon < 0 ? '' : value.slice(colon);
  }
  if (rest === '') return { host, port: undefined };
  const portText = rest.slice(1);
  if (rest[0] !== ':' || !/^[0-9]{1,5}$/.test(portText)) return null;
  const portNumber = Number(portText);
  if (portNumber < 1 || portNumber > 65535) return null;
  return { host, port: portNumber };
}

function joinHostPort(host, portNumber) {
  return isIPv6(host) ? `[${host}]:${portNumber}` : `${host}:${portNumber}`;
}

function arrayOf(name, value, item) {
  if (!Array.isArray(value)) throw invalidType(name, 'an array', value);
  return value.map((entry, i) => item(`${name}[${i}]`, entry));
}

function subnet(name, value) {
  const expected = 'an IPv4 address in dotted form (its /24 is scanned)';
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  if (isIPv6(value)) {
    throw optionError(
      'ERR_INVALID_ARG_VALUE',
      `option "${name}" must be ${expected}: the subnet scan is IPv4 only (an IPv6 /64 cannot be scanned); list IPv6 nodes in network.peers or use multicast (received ${describe(value)})`,
    );
  }
  if (!isIPv4(value)) throw invalidValue(name, expected, value);
  return value;
}

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

function isHost(host) {
  if (isIPv4(host) || isIPv6(host)) return true;
  // All digits and dots but not IPv4 ("10.0.0.256") is a mistyped address, not a name.
  if (/^[0-9.]*$/.test(host) || host.length > 253) return false;
  return host.split('.').every((label) => HOST_LABEL.test(label));
}

// "host:port" where host is a dotted IPv4 address or a DNS name; the native side resolves it.
// An IPv6 address goes in brackets ("[fd00::5]:27272"); an IP address without a port
// ("10.0.0.5", "fd00::5", "[fd00::5]") means this node's own network.port.
function peer(name, value, defaultPort) {
  const expected = 'a "host:port" string, like "10.0.0.5:27272" or "[fd00::5]:27272"';
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  const parsed = splitHostPort(value);
  if (!parsed || !isHost(parsed.host) || (parsed.port === undefined && !isIP(parsed.host))) {
    throw invalidValue(name, expected, value);
  }
  if (parsed.port === undefined) return joinHostPort(parsed.host, defaultPort);
  return isIPv6(parsed.host) ? joinHostPort(parsed.host, parsed.port) : value;
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

// Same rule as the original (the `ip` package): the first external IPv4 address; on a host
// without one (an IPv6-only pod), the first external IPv6 address that is not link-local;
// else loopback.
function defaultLocalAddress(interfaces = os.networkInterfaces()) {
  const external = Object.values(interfaces).flatMap((addresses) => (addresses || []).filter((entry) => !entry.internal));
  // Node 18.0–18.3 reported the family as a number.
  const v4 = external.find((entry) => entry.family === 'IPv4' || entry.family === 4);
  if (v4) return v4.address;
  const v6 = external.find((entry) => (entry.family === 'IPv6' || entry.family === 6) && isDialable(entry.address));
  return v6 ? v6.address : '127.0.0.1';
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
    address.local === undefined ? defaultLocalAddress() : localAddress('network.address.local', address.local);
  const listenPort = given(network.port, 27272, port, 'network.port');
  const multicastOn = given(network.multicast, true, boolean, 'network.multicast');
  // The group follows the family of a specific local address: IPv6 on an IPv6 one.
  const v6Local = isIPv6(local) && !isUnspecified(local);
  const group = given(network.multicast_address, v6Local ? 'ff02::27:27' : '239.255.27.27', multicastAddress, 'network.multicast_address');

  const native = {
    port: listenPort,
    address: local,
    hostName: given(network.host_name, os.hostname(), hostName, 'network.host_name'),
    multicast: multicastOn,
    multicastAddress: group,
    multicastPort: given(network.multicast_port, 27272, port, 'network.multicast_port'),
    multicastInterface: multicastInterface(network.multicast_interface, group, local, multicastOn),
    multicastTtl: given(network.multicast_ttl, 1, (n, v) => integer(n, v, 0, 255), 'network.multicast_ttl'),
    cluster: given(top.cluster, 'espial', clusterName, 'cluster'),
    metadata: given(top.metadata, '{}', metadata, 'metadata'),
    peers: given(network.peers, [], (n, v) => arrayOf(n, v, (i, e) => peer(i, e, listenPort)), 'network.peers'),
    peersResolveInterval: given(
      network.peers_resolve_interval,
      DEFAULT_PEERS_RESOLVE_INTERVAL,
      (n, v) => integer(n, v, MIN_PEERS_RESOLVE_INTERVAL, MAX_TIMER_MS, 'a whole number of milliseconds'),
      'network.peers_resolve_interval',
    ),
    // The scan is IPv4 only: by default the /24 of an IPv4 local address, else none.
    subnets: given(network.subnets, isIPv4(local) && local !== '0.0.0.0' ? [local] : [], (n, v) => arrayOf(n, v, subnet), 'network.subnets'),
    masterEligible: given(top.master_eligible, true, boolean, 'master_eligible'),
    masterElectionTimeout: given(top.master_election_timeout, 1000, timer, 'master_election_timeout'),
    masterPollingFrequency: given(top.master_polling_frequency, 5000, timer, 'master_polling_frequency'),
    // 0 = no quorum: a lone eligible node may be master (the original's behaviour).
    masterQuorum: given(top.master_quorum, 0, (n, v) => integer(n, v, 0, MAX_QUORUM), 'master_quorum'),
    sendPresenceFrequency: given(top.send_presence_frequency, 300, timer, 'send_presence_frequency'),
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
    // Request and reply (lib/requests.js): the default timeout, the requests in flight from
    // this node and to one target (past them request() waits), and the handlers of one name
    // running at once. max_requests_per_target is at most the core's MAX_INCOMING_PER_PEER,
    // the unanswered requests of one peer a node takes.
    requestTimeout: given(top.request_timeout, 10000, timer, 'request_timeout'),
    maxRequests: given(top.max_requests, 1024, (n, v) => integer(n, v, 1, 65536), 'max_requests'),
    maxRequestsPerTarget: given(
      top.max_requests_per_target,
      256,
      (n, v) => integer(n, v, 1, 4096),
      'max_requests_per_target',
    ),
    maxHandlerConcurrency: given(
      top.max_handler_concurrency,
      64,
      (n, v) => integer(n, v, 1, 65536),
      'max_handler_concurrency',
    ),
  };
  // A cluster_key that is present but undefined counts as given: `process.env.X` of an unset
  // variable must not quietly run an open cluster.
  if (Object.hasOwn(top, 'cluster_key')) native.clusterKey = clusterKey('cluster_key', top.cluster_key);
  if (network.advertise !== undefined) native.advertise = advertise('network.advertise', network.advertise);
  return native;
}

// network.multicast_interface: for an IPv4 group one of this host's IPv4 addresses (by
// default the local address, or the first external one when listening on every address);
// for an IPv6 group an interface name or index (by default the interface holding the local
// address).
function multicastInterface(value, group, local, multicastOn) {
  const name = 'network.multicast_interface';
  if (isIPv4(group)) {
    if (value !== undefined) return unicastAddress(name, value);
    return isIPv4(local) && local !== '0.0.0.0' ? local : defaultLocalAddress();
  }
  if (value !== undefined) return interfaceName(name, value);
  const holder = isUnspecified(local) ? undefined : interfaceOf(local);
  if (holder === undefined && multicastOn) {
    throw optionError(
      'ERR_INVALID_ARG_VALUE',
      `option "${name}" must be set for the IPv6 group ${group}: no interface of this host holds network.address.local (${local}); name one, like "eth0"`,
    );
  }
  return holder ?? '';
}

/**
 * Turns the addon's node info into the public node object the original handed out.
 * A fresh object every time; index.js builds one per change of a member and shares it.
 */
function toPublicNode(info) {
  const node = { id: info.id, host_name: info.hostName, ip: info.ip, port: info.port };
  // Where it asks to be dialed (network.advertise), only when it set one.
  if (info.advertised != null) node.advertised = info.advertised;
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
