'use strict';

const { EventEmitter } = require('node:events');
const { performance } = require('node:perf_hooks');
const { NativeNode } = require('./lib/load.js').loadBinding();
const { normalizeOptions, metadataJson, toPublicNode, describe } = require('./lib/options.js');
const { eventName, targetIds, encodePayload, decodePayload } = require('./lib/events.js');
const { forEachDelivery } = require('./lib/packed.js');
const { SendQueue } = require('./lib/send-queue.js');
const { Requests } = require('./lib/requests.js');
const { espialError } = require('./lib/errors.js');
const { version } = require('./package.json');

class Espial extends EventEmitter {
  #native;
  #info; // this node's NativeNodeInfo
  // id -> { info, node } of every other node, as the app has been told: its NativeNodeInfo,
  // and its public object, built once per change (JSON.parse of up to 64 KiB of metadata)
  // and shared by its messages' `from`, its added_node / updated_node and get_nodes().
  #nodes = new Map();
  #exiting; // the exit() promise, once exit has been asked for
  #left = false; // exit() has completed: this node belongs to no cluster any more
  #masterId; // id of the master as the app has been told (possibly this node's), or undefined
  #masterInfo; // NativeNodeInfo of that master when it was announced
  #joined = new Set(); // custom events whose messages are emitted
  #eligible; // master_eligible
  #sends; // the SendQueue: one native call per tick's sends, settled in order
  #filterTimeout; // connection_filter_timeout, in ms
  #filterWarned = false; // a filter failure went to process.emitWarning (once per node)
  #requests; // lib/requests.js: handle(), request(), query()

  /**
   * Starts a node on the next tick; `listening` follows, or `error` if it cannot start.
   * @param {object} [options] see README.md
   * @throws {TypeError} naming the option, if an option is unknown or invalid
   */
  constructor(options) {
    super();
    const nativeOptions = normalizeOptions(options);
    this.version = version;
    // The addon calls back with a batch of events, or, for a batch that is one run of
    // custom event messages and nothing else, with that run's parts (see #deliverRun).
    this.#native = new NativeNode(nativeOptions, (events, strings, count, data) =>
      events === null ? this.#deliverRun(strings, count, data) : this.#dispatchAll(events),
    );
    this.#info = this.#native.info();
    this.#eligible = nativeOptions.masterEligible;
    this.#filterTimeout = nativeOptions.connectionFilterTimeout;
    const native = this.#native;
    this.#sends = new SendQueue(
      (batch) => native.sendBatch(batch.names, batch.targets, batch.meta, batch.payload),
      nativeOptions.maxMessageSize,
    );
    const nodeOf = (id) => this.#nodes.get(id)?.node ?? (id === this.#info.id ? this.get_node_info() : { id });
    this.#requests = new Requests(native, this, nodeOf, this.#info.id, nativeOptions);
    // Not started here but on the next tick, so that what the caller does right after the
    // constructor (connection_filter(fn), listeners) is in place before any peer can
    // connect, as in the original, where the filter was set synchronously after creation.
    // Failures to start (a port in use, …) come back as `error` events, not as exceptions.
    // The addon starts a node once and never after exit(); not asking after exit() only
    // saves the call.
    process.nextTick(() => this.#exiting === undefined && this.#native.start());
  }

  // A listener that throws cannot drop the rest of the batch (which would leave get_nodes()
  // out of step with the events), nor throw inside the addon's callback: its exception is
  // rethrown on the next tick, an ordinary uncaught exception from JS.
  #dispatchAll(events) {
    for (let i = 0; i < events.length; i++) {
      try {
        this.#dispatch(events[i]);
      } catch (err) {
        process.nextTick(rethrow, err);
      }
    }
  }

  // A batch that is one run of custom event messages, as its parts: what a `messages`
  // event carries (lib/packed.js), without the two objects around them.
  #deliverRun(strings, count, data) {
    if (this.#left) return;
    try {
      forEachDelivery({ strings, count, data }, this.#deliver);
    } catch (err) {
      process.nextTick(rethrow, err);
    }
  }

  #dispatch(event) {
    // Once exit() has completed this node is in no cluster: late membership news is dropped,
    // so that get_nodes() stays empty and agrees with the events.
    if (event.kind === 'sent') {
      this.#sends.sent(event.batch, event.failures ?? null);
      return;
    }
    if (this.#left && event.kind !== 'error' && event.kind !== 'listening') return;
    switch (event.kind) {
      case 'listening':
        this.emit('listening');
        break;
      // The table changes just before the event is emitted, so that get_nodes() called from
      // a listener (or at any time) agrees with the events seen so far.
      case 'added_node':
        this.emit('added_node', this.#member(event.node));
        break;
      case 'updated_node':
        // The addon only reports updates of members it has announced; checked anyway, so a
        // stray update can never put a node into get_nodes() without its added_node.
        if (!this.#nodes.has(event.node.id)) break;
        this.emit('updated_node', this.#member(event.node));
        break;
      case 'removed_node':
        this.#nodes.delete(event.node.id);
        // A departed master is no master: get_master() says so until the next new_master.
        if (event.node.id === this.#masterId) this.#setMaster(undefined);
        this.emit('removed_node', toPublicNode(event.node));
        break;
      // Mastership, like the node table, changes before the event is emitted, so that
      // get_master() and is_master() agree with the events in every listener. promotion and
      // demotion update it too, so that the order of the three events in a batch never
      // matters: each states a fact the others agree with.
      case 'new_master':
        // Without a node: nobody is master any more. That is no new master, so no event;
        // get_master() returns undefined from now on.
        this.#setMaster(event.node);
        if (event.node) this.emit('new_master', this.get_master());
        break;
      case 'promotion':
        this.#setMaster(this.#info);
        this.emit('promotion', { previous_master: event.node ? toPublicNode(event.node) : undefined });
        break;
      case 'demotion':
        this.#setMaster(event.node);
        this.emit('demotion', event.node ? this.get_master() : undefined);
        break;
      case 'messages':
        forEachDelivery(event.messages, this.#deliver);
        break;
      case 'calls':
        this.#requests.dispatch(event.calls);
        break;
      case 'undelivered': {
        // Our own sends, as they were given: each decodes as it was encoded.
        const events = [];
        forEachDelivery(event.messages, (name, _to, payload, start, end, binary) => {
          events.push({ event: name, data: decodePayload(payload, start, end, binary) });
        });
        this.emit('undelivered', toPublicNode(event.node), events);
        break;
      }
      case 'node_accepted':
        this.emit('node_accepted', toPublicNode(event.node));
        break;
      case 'node_rejected':
        this.emit('node_rejected', toPublicNode(event.node));
        break;
      case 'error':
        // A filter that did not answer in time: the addon saw it, and names the node.
        if (event.code === 'ERR_ESPIAL_FILTER') {
          this.#filterFailed(event.message, event.node, undefined);
          break;
        }
        // A seed name that does not resolve (reported once per run of failed lookups; the
        // node keeps trying): a DNS hiccup must not end the process, and `error` without a
        // listener would throw, so without one it is a process warning.
        if (event.code === 'ERR_ESPIAL_SEED' && this.listenerCount('error') === 0) {
          process.emitWarning(event.message, { code: 'ERR_ESPIAL_SEED' });
          break;
        }
        this.emit('error', espialError(event.code, event.message));
        break;
      default:
        // The addon and this file ship together, so an unknown kind cannot come from a user;
        // ignoring it keeps a newer addon usable with this wrapper during development.
        break;
    }
  }

  // Records a member's latest info and builds its public object, which it returns.
  #member(info) {
    const node = toPublicNode(info);
    this.#nodes.set(info.id, { info, node });
    return node;
  }

  #setMaster(info) {
    this.#masterId = info ? info.id : undefined;
    this.#masterInfo = info;
  }

  // One message of a run the addon delivered packed (lib/packed.js's forEachDelivery calls
  // this for each, in order): bytes start..end of `payload`. A message of an event not
  // joined (any more) is dropped: one sent before leave() took effect may still arrive. A
  // listener that throws does not lose the messages after it: its exception is rethrown on
  // the next tick, as an uncaught exception from the listener would be.
  #deliver = (event, from, payload, start, end, binary) => {
    if (!this.#joined.has(event)) return;
    try {
      this.#emitMessage(event, from, payload, start, end, binary);
    } catch (err) {
      process.nextTick(rethrow, err);
    }
  };

  #emitMessage(event, from, payload, start, end, binary) {
    let data;
    try {
      data = decodePayload(payload, start, end, binary);
    } catch (cause) {
      // The addon refuses text that is not JSON before it gets here (counted in
      // stats().messages_refused); should any get through, it is dropped. It is reported as
      // an `error` event only to a listener: emitted without one, `error` would throw and
      // end the process, which is what a hostile peer is after.
      if (this.listenerCount('error') === 0) return;
      const message = `espial: a "${event}" message from node ${from} is not valid JSON (${cause.message})`;
      this.emit('error', espialError('ERR_ESPIAL_INVALID_PAYLOAD', message));
      return;
    }
    const sender = this.#nodes.get(from);
    // The addon only delivers messages of members, so `sender` is always known; the bare id
    // is a fallback that keeps `from.id` usable whatever happens.
    this.emit(event, data, sender ? sender.node : { id: from });
  }

  /**
   * Counters since the node started, from the native core: custom event messages and
   * bytes in and out, handshakes completed and failed, frames rejected, connections
   * refused, nodes rejected by the connection filter, beacons sent and ignored, and
   * messages refused (peer messages that broke a rule, such as metadata that is not a JSON
   * object or event text that is not JSON: never emitted).
   * @returns {Record<string, number>}
   */
  stats() {
    const s = this.#native.stats();
    return {
      messages_out: s.messagesOut,
      messages_in: s.messagesIn,
      bytes_out: s.bytesOut,
      bytes_in: s.bytesIn,
      handshakes_completed: s.handshakesCompleted,
      handshakes_failed: s.handshakesFailed,
      frames_rejected: s.framesRejected,
      connections_refused: s.connectionsRefused,
      nodes_rejected: s.nodesRejected,
      beacons_sent: s.beaconsSent,
      beacons_ignored: s.beaconsIgnored,
      beacons_refused: s.beaconsRefused,
      messages_refused: s.messagesRefused,
      filter_errors: s.filterErrors,
      key_mismatches: s.keyMismatches,
      dials_skipped: s.dialsSkipped,
      identity_mismatches: s.identityMismatches,
      version_mismatches: s.versionMismatches,
      messages_resent: s.messagesResent,
      duplicates_dropped: s.duplicatesDropped,
      messages_undelivered: s.messagesUndelivered,
      probes_sent: s.probesSent,
      probes_received: s.probesReceived,
      probes_rejected: s.probesRejected,
      probes_relayed: s.probesRelayed,
      indirect_probes: s.indirectProbes,
      answers_asked: s.answersAsked,
      pauses_noticed: s.pausesNoticed,
      requests_out: s.requestsOut,
      requests_in: s.requestsIn,
      replies_late: s.repliesLate,
      replies_refused: s.repliesRefused,
      seed_lookups_failed: s.seedLookupsFailed,
    };
  }

  /** This node's own object: `{ id, host_name, ip, port, metadata }`. */
  get_node_info() {
    return toPublicNode(this.#info);
  }

  /**
   * The other nodes in the cluster, as announced by `added_node` / `removed_node`; `[]` after
   * exit(). A new array of the shared node objects (see README.md, "Node objects").
   */
  get_nodes() {
    return Array.from(this.#nodes.values(), (member) => member.node);
  }

  /**
   * Decides which nodes may join: `fn(data, cb)` is asked about every node that wants to
   * be a member with this one (see README.md), and admits it only by answering `true`
   * with `cb(true)`, by returning `true`, or by returning a Promise of `true`.
   * `connection_filter(null)` removes the filter.
   * @param {((data: object, cb: (accept: boolean) => void) => unknown) | null} fn
   * @throws {TypeError} if `fn` is neither a function nor null
   */
  connection_filter(fn) {
    if (fn === null) {
      this.#native.setFilter(null);
      return;
    }
    if (typeof fn !== 'function') {
      const message = `espial: connection_filter(fn): fn must be a function or null (received ${describe(fn)})`;
      throw espialError('ERR_INVALID_ARG_TYPE', message, TypeError);
    }
    const timeout = this.#filterTimeout;
    const failed = (message, info, cause) => this.#filterFailed(message, info, cause);
    this.#native.setFilter((info) => askFilter(fn, this, info, timeout, failed));
  }

  // The connection filter threw, rejected, answered something that is not a boolean, or did
  // not answer in time; the node was refused. A typo in a filter used to mean that no
  // cluster ever formed, without a word. It is an `error` event with the node and what was
  // thrown, but only to a listener: a bug in the filter must not end the process, and
  // `error` without a listener would throw. Without one, a warning (once per node) goes to
  // process.emitWarning, shown on stderr by default. The addon counts each failure in
  // stats().filter_errors and logs it under DEBUG=espial.
  #filterFailed(message, info, cause) {
    if (this.#left) return;
    if (this.listenerCount('error') === 0) {
      if (this.#filterWarned) return;
      this.#filterWarned = true;
      process.emitWarning(`${message} (further filter failures: see stats().filter_errors, DEBUG=espial)`, {
        code: 'ERR_ESPIAL_FILTER',
      });
      return;
    }
    const err = espialError('ERR_ESPIAL_FILTER', message);
    err.node = info ? toPublicNode(info) : undefined;
    if (cause !== undefined) err.cause = cause;
    this.emit('error', err);
  }

  /**
   * The master's object (this node's own if it is the master), or undefined while there is
   * no master; agrees with the `new_master` events already emitted.
   * @returns {object | undefined}
   */
  get_master() {
    if (this.#masterId === undefined) return undefined;
    if (this.#masterId === this.#info.id) return this.get_node_info();
    // The member table holds the master's latest metadata (updated_node); the announced
    // object covers a master not (or no longer) in it.
    return toPublicNode(this.#nodes.get(this.#masterId)?.info ?? this.#masterInfo);
  }

  /** Whether this node is the master. */
  is_master() {
    return this.#masterId !== undefined && this.#masterId === this.#info.id;
  }

  /**
   * Makes this node the master of its cluster, with a new term: `new_master` follows on
   * every node, `demotion` on the old master and `promotion` here.
   * @throws {Error} with code ERR_ESPIAL_NOT_ELIGIBLE if master_eligible is false
   */
  promote() {
    if (!this.#eligible) {
      const message = 'espial: promote(): this node is not master eligible (master_eligible: false)';
      throw espialError('ERR_ESPIAL_NOT_ELIGIBLE', message);
    }
    this.#native.promote();
  }

  /**
   * Starts emitting the custom event `event` as `(data, from)`; other nodes learn that this
   * node wants it and send it from now on.
   * @param {string} event 1 to 255 bytes of UTF-8, not one of espial's own event names
   * @throws {TypeError} for a name that is not such a string
   * @throws {Error} with code ERR_ESPIAL_RESERVED_EVENT for one of espial's own event names
   * @throws {Error} with code ERR_ESPIAL_TOO_MANY_EVENTS past the number of events a node
   *   may join (4096 events, 64 KiB of their names in all); the event is not joined then
   */
  join(event) {
    const name = eventName('join', event);
    if (this.#joined.has(name)) return;
    this.#sends.flush();
    this.#native.join(name); // throws when refused: then the event is not joined
    this.#joined.add(name);
  }

  /**
   * Stops emitting the custom event `event`; other nodes stop sending it here. Leaving an
   * event not joined does nothing.
   * @param {string} event
   * @throws like join()
   */
  leave(event) {
    const name = eventName('leave', event);
    if (!this.#joined.has(name)) return;
    // Dropped here at once, whatever is still on its way.
    this.#joined.delete(name);
    this.#sends.flush();
    this.#native.leave(name);
  }

  /**
   * Sends the custom event `event` to every other node that joined it, or to `targets`.
   * Settles once the message is handed over to every target's connection (at the end of
   * this tick), waiting while a connection is backlogged; sends settle in the order they
   * were made.
   * @param {string} event
   * @param {unknown} data any JSON value, or a Buffer / Uint8Array (arrives as a Buffer)
   * @param {object | string | Array<object | string> | null} [targets] node objects or ids; omitted or null: every other node
   * @param {(err: Error | null) => void} [callback]
   * @returns {Promise<void>} rejects with ERR_ESPIAL_UNKNOWN_TARGET (a target is no member),
   *   ERR_ESPIAL_MESSAGE_TOO_LARGE (over max_message_size) or ERR_ESPIAL_NOT_RUNNING (after exit())
   * @throws {TypeError} for a bad event name, data JSON cannot carry, bad targets or callback
   * @throws {Error} with code ERR_ESPIAL_RESERVED_EVENT for one of espial's own event names
   */
  send(event, data, targets, callback) {
    if (typeof targets === 'function' && callback === undefined) {
      callback = targets;
      targets = undefined;
    }
    const name = eventName('send', event);
    if (callback !== undefined && typeof callback !== 'function') {
      const message = `espial: send(): callback must be a function (received ${describe(callback)})`;
      throw espialError('ERR_INVALID_ARG_TYPE', message, TypeError);
    }
    const ids = targetIds(targets);
    const sending = this.#sends.queue(name, ids, encodePayload(data).payload);
    if (callback) {
      // Outside the promise chain, as in exit(): an exception in the callback does not
      // become a rejection. Handling the rejection here also means a caller who only uses
      // the callback gets no unhandled rejection.
      sending.then(
        () => process.nextTick(callback, null),
        (err) => process.nextTick(callback, err),
      );
    }
    return sending;
  }

  /**
   * Serves requests named `name`: `fn(data, from)` returns the reply, or a Promise of it (a
   * JSON value or a Buffer); a throw or rejection reaches the asker as ERR_ESPIAL_REMOTE with
   * its message and code. Every node hears that this one serves `name`. Handling a name
   * again replaces its function.
   * @param {string} name same rules as an event name
   * @param {(data: unknown, from: object) => unknown} fn
   * @throws {Error} with code ERR_ESPIAL_TOO_MANY_EVENTS past 4096 names (64 KiB of names)
   */
  handle(name, fn) {
    this.#requests.handle(name, fn);
  }

  /**
   * Stops serving `name`; requests for it are answered ERR_ESPIAL_NO_HANDLER from now on.
   * @param {string} name
   */
  unhandle(name) {
    this.#requests.unhandle(name);
  }

  /**
   * Asks one node's handler `name` and resolves with its reply. `target`: a node object or
   * id, 'master', or omitted for the least busy node serving `name` (fewest requests of ours
   * in flight, ties round-robin).
   * @param {string} name
   * @param {unknown} data a JSON value or a Buffer
   * @param {object | string} [target]
   * @param {{ timeout?: number, signal?: AbortSignal }} [options]
   * @returns {Promise<unknown>}
   */
  request(name, data, target, options) {
    return this.#requests.request(name, data, target, options);
  }

  /**
   * Asks every node serving `name`; resolves at the deadline, or once every one answered,
   * with `[{ from, value } | { from, error }]`.
   * @param {string} name
   * @param {unknown} data
   * @param {{ timeout?: number, signal?: AbortSignal }} [options]
   * @returns {Promise<Array<{ from: object, value?: unknown, error?: Error }>>}
   */
  query(name, data, options) {
    return this.#requests.query(name, data, options);
  }

  /**
   * Replaces this node's metadata; every member receives it and emits `updated_node`.
   * @param {Record<string, unknown>} metadata a plain object of JSON values, at most 64 KiB as JSON
   * @throws {TypeError} naming `metadata`, as the `metadata` option does
   */
  set_metadata(metadata) {
    const json = metadataJson(metadata);
    this.#native.setMetadata(json);
    this.#info = this.#native.info();
  }

  /**
   * Leaves the cluster gracefully and releases every socket and timer, so the process can
   * end. Calling it again returns the same promise.
   * @param {(err: Error | null) => void} [callback]
   * @returns {Promise<void>}
   */
  exit(callback) {
    if (callback !== undefined && typeof callback !== 'function') {
      throw espialError('ERR_INVALID_ARG_TYPE', 'espial: exit(callback): callback must be a function', TypeError);
    }
    // Through the Promise constructor so that a synchronous throw from the addon becomes a
    // rejection like any other failure to exit.
    this.#sends.flush();
    this.#requests.flush();
    this.#exiting ??= new Promise((resolve) => {
      // exit() before the start tick: the addon never starts the node (it only lets go of
      // the event callback), so nothing is bound just to be closed again.
      resolve(this.#native.exit());
    }).then(() => {
      // Should a batch still wait for its outcome, it never went.
      this.#sends.failAll();
      this.#requests.failAll();
      this.#left = true;
      this.#nodes.clear();
      this.#setMaster(undefined);
    });
    if (callback) {
      // Outside the promise chain, so an exception in the callback is not turned into a
      // rejection of someone else's promise.
      this.#exiting.then(
        () => process.nextTick(callback, null),
        (err) => process.nextTick(callback, err),
      );
    }
    return this.#exiting;
  }
}

function rethrow(err) {
  throw err;
}

/**
 * Asks the application's filter about one node, for the addon, which awaits the Promise:
 * `true` admits, `false` refuses. The first answer wins, whichever way it comes (cb, a
 * returned boolean, a returned Promise). Returning undefined, a Promise of undefined or an
 * object that is not a thenable is no answer, so a filter may call cb later; no answer
 * within connection_filter_timeout refuses (the addon sees and reports that).
 * A filter that fails refuses too, but says so: it threw, its Promise rejected, or it
 * answered something that is not a boolean (cb('yes'), returning 'yes' or null, a Promise
 * of 'yes'). Then the Promise resolves with a string saying how, for the addon's count and
 * DEBUG line, and `failed(message, info, cause)` tells the application, unless the answer
 * came after the timeout, which the addon has already reported.
 */
function askFilter(fn, espial, info, timeoutMs, failed) {
  const started = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const fail = (reason, cause) => {
      if (settled) return;
      settled = true;
      resolve(reason);
      if (performance.now() - started >= timeoutMs) return;
      const message = `espial: connection filter failed on node ${info.id} (${info.ip}:${info.port}): ${reason}; the node was refused`;
      failed(message, info, cause);
    };
    const answer = (accept) => {
      if (settled) return;
      if (typeof accept !== 'boolean') {
        fail(`it answered ${accept === undefined ? 'undefined' : describe(accept)}, not true or false`, undefined);
        return;
      }
      settled = true;
      resolve(accept);
    };
    // The original handed the filter the node's data with its host name as `host`; the
    // README's own example reads `data.host`.
    const data = { ...toPublicNode(info), host: info.hostName };
    let returned;
    try {
      returned = fn.call(espial, data, answer);
    } catch (err) {
      fail(`it threw ${thrown(err)}`, err);
      return;
    }
    if (returned === undefined) return;
    if (typeof returned === 'boolean') {
      answer(returned);
    } else if (returned !== null && (typeof returned === 'object' || typeof returned === 'function')) {
      // Promise.resolve adopts any thenable (and turns a throwing `then` into a rejection);
      // a non-thenable object resolves to itself: no answer, as a callback-style API's
      // handle returned by the filter is not meant as one.
      Promise.resolve(returned).then(
        (value) => {
          if (value !== undefined && value !== returned) answer(value);
        },
        (err) => fail(`its Promise rejected with ${thrown(err)}`, err),
      );
    } else {
      answer(returned);
    }
  });
}

// What a filter threw, for a message: "TypeError: Cannot read …", or the value described.
function thrown(err) {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : describe(err);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

// The original module was a factory, `require("espial")(options)`; `new Espial(options)` is
// the other common form. A Proxy that constructs when called keeps a single class behind
// both, so `instanceof`, subclassing and the prototype work whichever form is used.
const espial = new Proxy(Espial, {
  apply: (Target, thisArg, args) => new Target(...args),
});

module.exports = espial;
module.exports.Espial = espial;
