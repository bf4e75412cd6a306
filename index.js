'use strict';

const { EventEmitter } = require('node:events');
const { NativeNode } = require('./binding.js');
const { normalizeOptions, toPublicNode } = require('./lib/options.js');
const { version } = require('./package.json');

class Espial extends EventEmitter {
  #native;
  #info; // this node's NativeNodeInfo
  #nodes = new Map(); // id -> NativeNodeInfo of every other node, as the app has been told
  #exiting; // the exit() promise, once exit has been asked for

  /**
   * Starts a node at once; `listening` follows, or `error` if it cannot start.
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
  }

  #dispatch(event) {
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
      case 'removed_node':
        this.#nodes.delete(event.node.id);
        this.emit('removed_node', toPublicNode(event.node));
        break;
      case 'node_accepted':
        this.emit('node_accepted', toPublicNode(event.node));
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

  /** The other nodes in the cluster, as announced by `added_node` / `removed_node`. */
  get_nodes() {
    return Array.from(this.#nodes.values(), toPublicNode);
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
    this.#exiting ??= new Promise((resolve) => resolve(this.#native.exit()));
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

// The original module was a factory, `require("espial")(options)`; `new Espial(options)` is
// the other common form. A Proxy that constructs when called keeps a single class behind
// both, so `instanceof`, subclassing and the prototype work whichever form is used.
const espial = new Proxy(Espial, {
  apply: (Target, thisArg, args) => new Target(...args),
});

module.exports = espial;
module.exports.Espial = espial;
