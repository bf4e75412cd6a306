'use strict';

const { EventEmitter } = require('node:events');
const { NativeNode } = require('./binding.js');
const { normalizeOptions, metadataJson, toPublicNode, describe } = require('./lib/options.js');
const { version } = require('./package.json');

class Espial extends EventEmitter {
  #native;
  #info; // this node's NativeNodeInfo
  #nodes = new Map(); // id -> NativeNodeInfo of every other node, as the app has been told
  #started = false; // native.start() has been called
  #exiting; // the exit() promise, once exit has been asked for
  #left = false; // exit() has completed: this node belongs to no cluster any more

  /**
   * Starts a node on the next tick; `listening` follows, or `error` if it cannot start.
   * @param {object} [options] see README.md
   * @throws {TypeError} naming the option, if an option is unknown or invalid
   */
  constructor(options) {
    super();
    const nativeOptions = normalizeOptions(options);
    this.version = version;
    this.#native = new NativeNode(nativeOptions, (events) => {
      // One tick per event: a listener that throws then surfaces as an ordinary uncaught
      // exception from JS, never inside the addon's callback, and cannot drop the rest of
      // the batch (which would leave get_nodes() out of step with the events).
      for (const event of events) process.nextTick(() => this.#dispatch(event));
    });
    this.#info = this.#native.info();
    // Not started here but on the next tick, so that what the caller does right after the
    // constructor (connection_filter(fn), listeners) is in place before any peer can
    // connect, as in the original, where the filter was set synchronously after creation.
    process.nextTick(() => this.#start());
  }

  #start() {
    if (this.#started) return;
    this.#started = true;
    // Failures to start (a port in use, …) come back as `error` events, not as exceptions.
    this.#native.start();
  }

  #dispatch(event) {
    // Once exit() has completed this node is in no cluster: late membership news is dropped,
    // so that get_nodes() stays empty and agrees with the events.
    if (this.#left && event.kind !== 'error' && event.kind !== 'listening') return;
    switch (event.kind) {
      case 'listening':
        this.emit('listening');
        break;
      // The table changes just before the event is emitted, so that get_nodes() called from
      // a listener (or at any time) agrees with the events seen so far.
      case 'added_node':
        this.#nodes.set(event.node.id, event.node);
        this.emit('added_node', toPublicNode(event.node));
        break;
      case 'updated_node':
        // The addon only reports updates of members it has announced; checked anyway, so a
        // stray update can never put a node into get_nodes() without its added_node.
        if (!this.#nodes.has(event.node.id)) break;
        this.#nodes.set(event.node.id, event.node);
        this.emit('updated_node', toPublicNode(event.node));
        break;
      case 'removed_node':
        this.#nodes.delete(event.node.id);
        this.emit('removed_node', toPublicNode(event.node));
        break;
      case 'node_accepted':
        this.emit('node_accepted', toPublicNode(event.node));
        break;
      case 'node_rejected':
        this.emit('node_rejected', toPublicNode(event.node));
        break;
      case 'error': {
        const err = new Error(event.message);
        err.code = event.code;
        this.emit('error', err);
        break;
      }
      default:
        // The addon and this file ship together, so an unknown kind cannot come from a user;
        // ignoring it keeps a newer addon usable with this wrapper during development.
        break;
    }
  }

  /** This node's own object: `{ id, host_name, ip, port, metadata }`. */
  get_node_info() {
    return toPublicNode(this.#info);
  }

  /** The other nodes in the cluster, as announced by `added_node` / `removed_node`; `[]` after exit(). */
  get_nodes() {
    return Array.from(this.#nodes.values(), toPublicNode);
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
      const err = new TypeError(
        `espial: connection_filter(fn): fn must be a function or null (received ${describe(fn)})`,
      );
      err.code = 'ERR_INVALID_ARG_TYPE';
      throw err;
    }
    this.#native.setFilter((info) => askFilter(fn, this, info));
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
      const err = new TypeError('espial: exit(callback): callback must be a function');
      err.code = 'ERR_INVALID_ARG_TYPE';
      throw err;
    }
    // Through the Promise constructor so that a synchronous throw from the addon becomes a
    // rejection like any other failure to exit.
    this.#exiting ??= new Promise((resolve) => {
      // exit() before the start tick: the node is never started (the addon then only lets go
      // of the event callback), so nothing is bound just to be closed again.
      this.#started = true;
      resolve(this.#native.exit());
    }).then(() => {
      this.#left = true;
      this.#nodes.clear();
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

/**
 * Asks the application's filter about one node, for the addon, which awaits the Promise:
 * `true` admits; `false`, a rejection, or no answer within connection_filter_timeout refuses.
 * The first answer wins, whichever way it comes (cb, a returned boolean, a returned Promise);
 * anything else returned is no answer, so a filter may return undefined and call cb later.
 */
function askFilter(fn, espial, info) {
  return new Promise((resolve, reject) => {
    const answer = (accept) => resolve(accept === true);
    // The original handed the filter the node's data with its host name as `host`; the
    // README's own example reads `data.host`.
    const data = { ...toPublicNode(info), host: info.hostName };
    let returned;
    try {
      returned = fn.call(espial, data, answer);
    } catch (err) {
      reject(err);
      return;
    }
    if (typeof returned === 'boolean') {
      answer(returned);
    } else if (returned !== null && (typeof returned === 'object' || typeof returned === 'function')) {
      // Promise.resolve adopts any thenable (and turns a throwing `then` into a rejection);
      // a non-thenable object resolves to itself, which is not a boolean, so no answer.
      Promise.resolve(returned).then((value) => {
        if (typeof value === 'boolean') answer(value);
      }, reject);
    }
  });
}

// The original module was a factory, `require("espial")(options)`; `new Espial(options)` is
// the other common form. A Proxy that constructs when called keeps a single class behind
// both, so `instanceof`, subclassing and the prototype work whichever form is used.
const espial = new Proxy(Espial, {
  apply: (Target, thisArg, args) => new Target(...args),
});

module.exports = espial;
module.exports.Espial = espial;
