#!/usr/bin/env node
'use strict';

// The espial command line: look at a cluster (`members`, `watch`) or run a node (`node`).
// Exit codes: 0 done, 1 something failed at run time (the node could not start, no node
// found by `members`), 2 bad arguments.

const net = require('node:net');
const { parseArgs } = require('node:util');

const USAGE = `Usage: espial <command> [options]

Commands:
  espial members   join as a non-eligible observer, print the cluster's nodes and master
                   as a table, and leave
  espial watch     print membership and election events live, until Ctrl-C or --duration
  espial request <name> <json>   ask a node's handler and print its reply (--target, --timeout)
  espial node      run a node (with --metadata) until Ctrl-C or --duration
  espial keygen    print a new random cluster_key (128 bits, base64url)

Options of every command:
  --interface <ip>           address of this node, IPv4 or IPv6, and (IPv4) of the
                             interface the discovery beacons use; for IPv6 the beacons use
                             the interface holding it (default: the first non-internal
                             IPv4 address, else 127.0.0.1)
  --port <port>              TCP port of this node (default: members and watch a free port,
                             node 27272)
  --multicast-port <port>    UDP port of the discovery beacons (default 27272)
  --multicast-address <ip>   multicast group of the beacons (default 239.255.27.27)
  --peers <host:port,...>    manual discovery: dial these seed nodes, no multicast
  --cluster <name>           cluster name (default "espial")
  --cluster-key <secret>     the cluster's shared secret, 16+ characters (the
                             ESPIAL_CLUSTER_KEY environment variable keeps it out of ps)
  --json                     machine-readable output (JSON)
  -h, --help                 this help; \`espial <command> --help\` for a command's own
  -v, --version              the version of espial

Run \`espial <command> --help\` for the options of one command.`;

const COMMON_HELP = `Options of every command: --interface <ip>, --port <port>, --multicast-port <port>,
--multicast-address <ip>, --peers <host:port,...>, --cluster <name>, --cluster-key <secret>,
--json, --help (see \`espial --help\`).`;

const COMMANDS = {
  members: {
    help: `Usage: espial members [options]

Joins the cluster as a node that can never be master (an observer), waits --wait ms for
the membership to settle, prints every other node and which one is the master, then leaves.
The other nodes see the observer come and go (added_node, removed_node); its metadata is
{"espial_observer":"members"} (\`espial watch\`: "watch"), and the ROLE column (JSON:
"observers") marks such nodes as observers.

  --wait <ms>    how long to wait for the membership to settle (default 2000)

Exits 0 with the table, or 1 if no node was found.

${COMMON_HELP}`,
    options: { wait: { type: 'string' } },
  },
  watch: {
    help: `Usage: espial watch [options]

Joins the cluster as a node that can never be master (an observer) and prints membership
and election events as they happen (added_node, updated_node, removed_node, new_master,
node_accepted, node_rejected, error), one line each, until Ctrl-C or --duration.

  --duration <s>   leave after this many seconds (default: run until Ctrl-C)

${COMMON_HELP}`,
    options: { duration: { type: 'string' } },
  },
  node: {
    help: `Usage: espial node [options]

Runs a node of the cluster and prints its events, until Ctrl-C or --duration; Ctrl-C
leaves the cluster gracefully.

  --metadata <json>    this node's metadata, a JSON object (default {})
  --host-name <name>   host name reported to the other nodes (default: this host's name)
  --observer           never become master (master_eligible: false)
  --duration <s>       leave after this many seconds (default: run until Ctrl-C)

${COMMON_HELP}`,
    options: {
      metadata: { type: 'string' },
      'host-name': { type: 'string' },
      observer: { type: 'boolean' },
      duration: { type: 'string' },
    },
  },
};

COMMANDS.request = {
  help: `Usage: espial request <name> <json> [options]

Joins the cluster as a node that can never be master (an observer), asks one node's handler
<name> (see \`espial.handle()\`) with <json> as its data, prints the reply as JSON, and
leaves. Waits up to --wait ms for the target (or a node serving <name>) to be known first.

  --target <id|master>   the node to ask: a node id, or master (default: the least busy
                         node serving <name>)
  --timeout <ms>         how long to wait for the reply (default 10000)
  --wait <ms>            how long to wait for the cluster first (default 2000)

Exits 0 with the reply, 1 if the request failed (the error's code is printed, e.g.
ERR_ESPIAL_TIMEOUT, ERR_ESPIAL_NO_HANDLER, ERR_ESPIAL_REMOTE).

${COMMON_HELP}`,
  options: { target: { type: 'string' }, timeout: { type: 'string' }, wait: { type: 'string' } },
  positionals: 2,
};

const COMMON_OPTIONS = {
  interface: { type: 'string' },
  port: { type: 'string' },
  'multicast-port': { type: 'string' },
  'multicast-address': { type: 'string' },
  peers: { type: 'string' },
  cluster: { type: 'string' },
  'cluster-key': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
};

// Which flag sets which espial option, so that an option error names the flag.
const FLAG_OF = {
  'network.address.local': '--interface',
  'network.multicast_interface': '--interface',
  'network.port': '--port',
  'network.multicast_port': '--multicast-port',
  'network.multicast_address': '--multicast-address',
  'network.peers': '--peers',
  cluster: '--cluster',
  cluster_key: '--cluster-key',
  metadata: '--metadata',
  'network.host_name': '--host-name',
};

// The metadata key of a node that `espial members` or `espial watch` runs: an observer,
// which `members` marks as one.
const OBSERVER_KEY = 'espial_observer';
const isObserver = (node) => node.metadata !== null && typeof node.metadata === 'object' && typeof node.metadata[OBSERVER_KEY] === 'string';

const CORE_EVENTS = ['added_node', 'updated_node', 'removed_node', 'new_master', 'promotion', 'demotion', 'node_accepted', 'node_rejected'];

class UsageError extends Error {}

function usageError(message, command) {
  const hint = command ? `espial ${command} --help` : 'espial --help';
  return new UsageError(`espial: ${message}\nRun \`${hint}\` for usage.`);
}

function parseCommandLine(argv) {
  const first = argv[0];
  if (first === undefined) throw usageError('no command given (members, watch, request or node)');
  if (first === '-h' || first === '--help') return { help: USAGE };
  if (first === '-v' || first === '--version') return { version: true };
  if (first.startsWith('-')) throw usageError(`expected a command (members, watch, request or node) before ${first}`);
  const spec = COMMANDS[first];
  if (!spec) throw usageError(`unknown command "${first}" (expected members, watch, request or node)`);
  let parsed;
  try {
    const allowPositionals = spec.positionals !== undefined;
    parsed = parseArgs({ args: argv.slice(1), options: { ...COMMON_OPTIONS, ...spec.options }, strict: true, allowPositionals });
  } catch (err) {
    // parseArgs says e.g. "Unknown option '--prot'" or "Option '--port <value>' argument missing".
    throw usageError(err.message.replace(/\. To specify a positional argument.*$/s, ''), first);
  }
  const values = parsed.values;
  if (values.help) return { help: spec.help };
  if (values.version) return { version: true };
  if (spec.positionals !== undefined) {
    if (parsed.positionals.length !== spec.positionals) {
      throw usageError(`${first} takes ${spec.positionals} arguments, <name> and <json> (received ${parsed.positionals.length})`, first);
    }
    try {
      values.data = JSON.parse(parsed.positionals[1]);
    } catch (err) {
      throw usageError(`<json> is not JSON: ${err.message}`, first);
    }
    values.name = parsed.positionals[0];
  }
  return { command: first, values };
}

function integerFlag(values, name, min, max, command) {
  const text = values[name];
  if (text === undefined) return undefined;
  if (!/^[0-9]+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw usageError(`--${name} must be a whole number from ${min} to ${max} (received "${text}")`, command);
  }
  return Number(text);
}

function secondsFlag(values, name, command) {
  const text = values[name];
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || !(seconds > 0) || seconds > 2_000_000) {
    throw usageError(`--${name} must be a positive number of seconds (received "${text}")`, command);
  }
  return seconds;
}

// The espial options a command line asks for; `port` is filled in later if not given.
function nodeOptions(command, values) {
  const network = {};
  if (values.interface !== undefined) {
    network.address = { local: values.interface };
    // An IPv4 group is joined on an interface named by one of its IPv4 addresses; for an
    // IPv6 address the options find the interface holding it.
    if (!net.isIPv6(values.interface)) network.multicast_interface = values.interface;
  }
  network.port = integerFlag(values, 'port', 1, 65535, command);
  network.multicast_port = integerFlag(values, 'multicast-port', 1, 65535, command);
  if (values['multicast-address'] !== undefined) network.multicast_address = values['multicast-address'];
  if (values.peers !== undefined) {
    const peers = values.peers.split(',').map((p) => p.trim()).filter((p) => p !== '');
    if (peers.length === 0) throw usageError('--peers needs at least one host:port', command);
    // Manual discovery through the seeds alone: no multicast and no subnet scan.
    network.multicast = false;
    network.peers = peers;
    network.subnets = [];
  }
  if (values['host-name'] !== undefined) network.host_name = values['host-name'];
  for (const key of Object.keys(network)) if (network[key] === undefined) delete network[key];

  const options = { network };
  if (values.cluster !== undefined) options.cluster = values.cluster;
  const key = values['cluster-key'] ?? process.env.ESPIAL_CLUSTER_KEY;
  if (key !== undefined && key !== '') options.cluster_key = key;
  const observer = command === 'members' || command === 'watch' || command === 'request';
  if (observer || values.observer) options.master_eligible = false;
  // Marks this node as the CLI looking on, so that `espial members` elsewhere can say so.
  if (observer) options.metadata = { [OBSERVER_KEY]: command };
  if (values.metadata !== undefined) {
    let metadata;
    try {
      metadata = JSON.parse(values.metadata);
    } catch (err) {
      throw usageError(`--metadata is not valid JSON (${err.message})`, command);
    }
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
      throw usageError('--metadata must be a JSON object, like \'{"role":"web"}\'', command);
    }
    options.metadata = metadata;
  }
  return options;
}

// A port number free on `address` for TCP and for UDP, for an observer that was given no
// --port: the node listens on TCP and takes the same number for its probe socket (UDP),
// which another socket may hold. A TCP port the OS chose whose number is taken on UDP is
// kept open while the next is drawn, so each try draws another; 16 tries.
const FREE_PORT_TRIES = 16;

async function freePort(address) {
  const dgram = require('node:dgram');
  const listen = () =>
    new Promise((resolve, reject) => {
      const server = net.createServer();
      server.unref();
      server.once('error', reject);
      server.listen(0, address, () => resolve(server));
    });
  const udpFree = (port) =>
    new Promise((resolve) => {
      const socket = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
      socket.unref();
      socket.once('error', () => resolve(false));
      socket.bind(port, address, () => socket.close(() => resolve(true)));
    });
  const held = [];
  try {
    for (let i = 0; i < FREE_PORT_TRIES; i++) {
      const server = await listen();
      held.push(server);
      const { port } = server.address();
      if (await udpFree(port)) return port;
    }
    throw new Error(`no port free for both TCP and UDP on ${address} in ${FREE_PORT_TRIES} tries`);
  } finally {
    await Promise.all(held.map((server) => new Promise((resolve) => server.close(() => resolve()))));
  }
}

// What a peer must not get to a terminal as it is (a forged line, an escape sequence,
// reordered text): control characters (C0, DEL, C1) and bidirectional overrides. Peer text
// (host names, metadata) is printed with these as \uXXXX escapes; JSON.stringify already
// escapes C0 inside strings, the rest is escaped in its output the same way, which keeps
// it valid JSON meaning the same.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_IN_JSON = /[\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c) {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

function safe(text) {
  return String(text).replace(UNSAFE, escapeChar);
}

function safeJson(value, indent) {
  return JSON.stringify(value, null, indent).replace(UNSAFE_IN_JSON, escapeChar);
}

function shortId(id) {
  return id.slice(0, 8);
}

function describeNode(node) {
  if (!node) return 'none';
  // A node that refused this one (node_rejected) has no metadata: it never crossed.
  const metadata = node.metadata === undefined ? '' : ` ${safeJson(node.metadata)}`;
  return `${node.id} ${safe(node.host_name)} ${node.ip}:${node.port}${metadata}`;
}

function table(rows) {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => row[col].length)));
  return rows.map((row) => row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]))).join('  ').trimEnd()).join('\n');
}

function membersTable(nodes, master, cluster) {
  const lines = [];
  const masterText = master ? `${safe(master.host_name)} (${shortId(master.id)})` : 'none';
  const observers = nodes.filter(isObserver).length;
  const observersText = observers > 0 ? ` (${observers} of them espial CLI observer${observers === 1 ? '' : 's'})` : '';
  lines.push(`cluster "${cluster}": ${nodes.length} node${nodes.length === 1 ? '' : 's'}${observersText}, master: ${masterText}`);
  if (nodes.length > 0) {
    const rows = [['ID', 'HOST', 'ADDRESS', 'ROLE', 'METADATA']];
    const sorted = [...nodes].sort((a, b) => a.host_name.localeCompare(b.host_name) || a.port - b.port || a.id.localeCompare(b.id));
    for (const node of sorted) {
      const role = master && master.id === node.id ? 'master' : isObserver(node) ? `observer(${safe(node.metadata[OBSERVER_KEY])})` : 'node';
      rows.push([node.id, safe(node.host_name), `${node.ip}:${node.port}`, role, safeJson(node.metadata)]);
    }
    lines.push(table(rows));
  }
  return lines.join('\n');
}

function eventLine(event, arg, json) {
  const time = new Date().toISOString();
  let node = arg;
  if (event === 'promotion') node = arg && arg.previous_master;
  if (json) {
    const record = { time, event };
    if (event === 'promotion') record.previous_master = node ?? null;
    else if (event === 'demotion') record.new_master = node ?? null;
    else if (event === 'error') record.error = { code: arg.code, message: arg.message };
    else if (node !== undefined) record.node = node;
    return safeJson(record);
  }
  if (event === 'error') return `${time}  ${event.padEnd(13)} ${arg.code} ${safe(arg.message)}`;
  if (event === 'promotion') return `${time}  ${event.padEnd(13)} this node is master; previous master: ${describeNode(node)}`;
  if (event === 'demotion') return `${time}  ${event.padEnd(13)} this node is no longer master; new master: ${describeNode(node)}`;
  return `${time}  ${event.padEnd(13)} ${describeNode(node)}`;
}

async function run(command, values) {
  const options = nodeOptions(command, values);
  const json = Boolean(values.json);
  const waitMs = command === 'members' || command === 'request' ? (integerFlag(values, 'wait', 0, 600_000, command) ?? 2000) : undefined;
  const durationS = command === 'watch' || command === 'node' ? secondsFlag(values, 'duration', command) : undefined;
  const timeoutMs = command === 'request' ? (integerFlag(values, 'timeout', 1, 2 ** 31 - 1, command) ?? 10000) : undefined;

  // Checked before anything starts: the same TypeErrors a program would get, named by flag.
  const { normalizeOptions } = require('../lib/options.js');
  const checked = normalizeOptions({ ...options, network: { ...options.network, port: options.network.port ?? 27272 } });
  if (options.network.port === undefined) {
    options.network.port = command === 'node' ? 27272 : await freePort(checked.address);
  }
  const espial = require('..');
  const node = espial(options);
  const info = node.get_node_info();
  const cluster = options.cluster ?? 'espial';
  const role = options.master_eligible === false ? 'observer' : 'node';

  let listening = false;
  let exitCode = 0;
  let finishing;
  let ended;
  const done = new Promise((resolve) => (ended = resolve));
  const finish = (code) => {
    if (finishing) return finishing;
    exitCode = Math.max(exitCode, code);
    // Whatever happens, the process ends: exit() lets it end by itself, and this unref'd
    // timer ends it if something were left behind.
    setTimeout(() => process.exit(exitCode), 10_000).unref();
    finishing = node.exit().then(
      () => {
        process.exitCode = exitCode;
      },
      (err) => {
        console.error(`espial: leaving failed: ${err.message}`);
        process.exitCode = 1;
      },
    );
    finishing.then(ended);
    return finishing;
  };

  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130); // a second Ctrl-C: leave at once
    interrupted = true;
    finish(0);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  node.on('error', (err) => {
    if (!listening) {
      console.error(`espial: cannot start: ${safe(err.message).split('\n')[0]} (${err.code})`);
      finish(1);
    } else if (command === 'members') {
      console.error(`espial: ${safe(err.message)} (${err.code})`);
    } else {
      console.log(eventLine('error', err, json));
    }
  });

  if (command === 'watch' || command === 'node') {
    for (const event of CORE_EVENTS) node.on(event, (arg) => console.log(eventLine(event, arg, json)));
  }

  await new Promise((resolve) => {
    node.once('listening', resolve);
    node.once('error', resolve);
  });
  if (finishing) return finishing;
  listening = true;
  const where = options.network.multicast === false ? `peers ${options.network.peers.join(',')}` : `multicast ${options.network.multicast_address ?? '239.255.27.27'}:${options.network.multicast_port ?? 27272}`;
  console.error(`espial: ${role} ${shortId(info.id)} on ${info.ip}:${info.port}, cluster "${cluster}", ${where}`);

  if (command === 'members') {
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    if (finishing) return finishing;
    const nodes = node.get_nodes();
    const master = node.get_master();
    if (json) {
      const observers = nodes.filter(isObserver).map((n) => n.id);
      console.log(safeJson({ cluster, master: master ?? null, nodes, observers }, 2));
    } else {
      console.log(membersTable(nodes, master, cluster));
    }
    return finish(nodes.length === 0 ? 1 : 0);
  }

  if (command === 'request') {
    const target = values.target;
    // Until the target (or a node serving the name) is known, or --wait is up.
    const deadline = Date.now() + waitMs;
    let reply;
    for (;;) {
      try {
        reply = { value: await node.request(values.name, values.data, target, { timeout: timeoutMs }) };
        break;
      } catch (err) {
        const unknown = ['ERR_ESPIAL_NO_HANDLER', 'ERR_ESPIAL_UNKNOWN_TARGET'].includes(err.code);
        if (unknown && Date.now() < deadline && !finishing) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          continue;
        }
        reply = { error: err };
        break;
      }
    }
    if (finishing) return finishing;
    if (reply.error) {
      const remote = reply.error.remote ? ` [remote ${safe(reply.error.remote.code)}]` : '';
      console.error(`espial: ${safe(reply.error.message).replace(/^espial: /, '')}${remote} (${reply.error.code})`);
      return finish(1);
    }
    const value = Buffer.isBuffer(reply.value) ? { base64: reply.value.toString('base64') } : reply.value;
    console.log(safeJson(value ?? null, json ? undefined : 2));
    return finish(0);
  }

  if (durationS !== undefined) {
    setTimeout(() => finish(0), durationS * 1000).unref();
  }
  // Runs until a signal or --duration; the node keeps the process alive meanwhile.
  return done;
}

// One line for a failure at run time (the stack only under DEBUG=espial): what failed and,
// for the usual mistakes, what to do.
function runtimeError(err, values) {
  if (process.env.DEBUG && /espial/.test(process.env.DEBUG) && err && err.stack) return `espial: ${err.stack}`;
  const code = err && err.code ? ` (${err.code})` : '';
  if (err && err.code === 'EADDRNOTAVAIL') {
    return `espial: cannot use --interface ${values.interface ?? ''}: it is not an address of this machine${code}; see \`ip addr\` for this machine's addresses`;
  }
  const message = String(err && err.message !== undefined ? err.message : err).replace(/^espial: /, '');
  return `espial: ${safe(message).split('\n')[0]}${code}`;
}

// `espial keygen`: a cluster_key nobody can guess, 128 bits from the OS's CSPRNG, in
// base64url (22 characters, no padding), fit for an environment variable. It takes no options.
const KEYGEN_HELP = `Usage: espial keygen

Prints a new random cluster_key: 128 bits from the operating system's random number
generator, as 22 base64url characters. Give the same key to every node of the cluster,
e.g. as ESPIAL_CLUSTER_KEY, and keep it out of source code.`;

function keygen(args) {
  if (args.length === 1 && (args[0] === '-h' || args[0] === '--help')) {
    console.log(KEYGEN_HELP);
    return 0;
  }
  if (args.length > 0) {
    console.error(`espial: keygen takes no arguments (received ${JSON.stringify(args[0])})\nRun \`espial keygen --help\` for usage.`);
    return 2;
  }
  console.log(require('node:crypto').randomBytes(16).toString('base64url'));
  return 0;
}

async function main(argv) {
  if (argv[0] === 'keygen') return keygen(argv.slice(1));
  let parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.message);
      return 2;
    }
    throw err;
  }
  if (parsed.help) {
    console.log(parsed.help);
    return 0;
  }
  if (parsed.version) {
    console.log(require('../package.json').version);
    return 0;
  }
  try {
    await run(parsed.command, parsed.values);
    return process.exitCode ?? 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.message);
      return 2;
    }
    if (err instanceof TypeError && /^ERR_(INVALID_ARG|ESPIAL_UNKNOWN_OPTION)/.test(err.code || '')) {
      const name = /"([^"]+)"/.exec(err.message)?.[1]?.replace(/\[\d+\]$/, '');
      const flag = name && FLAG_OF[name] ? ` (${FLAG_OF[name]})` : '';
      console.error(`${err.message}${flag}\nRun \`espial ${parsed.command} --help\` for usage.`);
      return 2;
    }
    console.error(runtimeError(err, parsed.values));
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
