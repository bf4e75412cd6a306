'use strict';

// Request and reply (handle, unhandle, request, query). The core correlates: it numbers each
// request, keeps its target and deadline, checks every reply against them and fails a
// request at once when its target is removed (src/core/calls.rs says why it lives there).
// What lives here is what only JavaScript can do: run handlers (at most
// max_handler_concurrency at a time per name), settle Promises, honour AbortSignals, and make
// request() wait, as send() does under backpressure, while this node has max_requests in
// flight or the target max_requests_per_target.

const { espialError } = require('./errors.js');
const { eventName, encodePayload, decodePayload } = require('./events.js');
const { describe } = require('./options.js');

// What an entry of a `calls` run is (src/binding/calls.rs has the same list).
const KIND = Object.freeze({
  REQUEST_JSON: 0,
  REQUEST_BINARY: 1,
  VALUE_JSON: 2,
  VALUE_BINARY: 3,
  REMOTE: 4,
  NO_HANDLER: 5,
  BUSY: 6,
  TOO_LARGE: 7,
  TIMEOUT: 8,
  TARGET_LEFT: 9,
});
const FIELDS = 6;
const EMPTY = Buffer.alloc(0);
// The bounds the core puts on a remote error (MAX_REMOTE_CODE, MAX_REMOTE_MESSAGE).
const MAX_REMOTE_CODE = 64;

/** Node's own AbortError: name 'AbortError', code 'ABORT_ERR', the signal's reason as cause. */
class AbortError extends Error {
  constructor(reason) {
    super('The operation was aborted', reason === undefined ? undefined : { cause: reason });
    this.name = 'AbortError';
    this.code = 'ABORT_ERR';
  }
}

/**
 * Calls `fn(name, from, kind, id, data, start, end)` for each entry of a `calls` run.
 * @param {{ strings: string[], count: number, data: Buffer }} calls
 */
function forEachCall({ strings, count, data }, fn) {
  const step = FIELDS * 4;
  let start = 0;
  for (let at = data.length - count * step; at < data.length; at += step) {
    const end = start + data.readUInt32LE(at + 8);
    const nameAt = data.readUInt32LE(at);
    const id = data.readUInt32LE(at + 16) + data.readUInt32LE(at + 20) * 2 ** 32;
    const name = nameAt === 0xffffffff ? undefined : strings[nameAt];
    fn(name, strings[data.readUInt32LE(at + 4)], data.readUInt32LE(at + 12), id, data, start, end);
    start = end;
  }
}

function timeoutError(name, target, ms) {
  return espialError('ERR_ESPIAL_TIMEOUT', `espial: request("${name}") to node ${target}: no reply within ${ms} ms`);
}

class Requests {
  #native;
  #espial;
  #nodeOf; // id -> public node object (or { id })
  #maxRequests;
  #maxPerTarget;
  #concurrency;
  #defaultTimeout;
  #handlers = new Map(); // name -> { fn, running, queue: [{ from, id, data }] }
  #pending = new Map(); // id -> { name, target, settle(kind, data, start, end) }
  #inflight = new Map(); // target id -> requests in flight to it
  #total = 0;
  #waiting = []; // requests waiting for room, in order: { target | undefined, name, start }
  #cursor = new Map(); // name -> round-robin position among its servers

  #selfId;

  constructor(native, espial, nodeOf, selfId, options) {
    this.#selfId = selfId;
    this.#native = native;
    this.#espial = espial;
    this.#nodeOf = nodeOf;
    this.#maxRequests = options.maxRequests;
    this.#maxPerTarget = options.maxRequestsPerTarget;
    this.#concurrency = options.maxHandlerConcurrency;
    this.#defaultTimeout = options.requestTimeout;
  }

  handle(name, fn) {
    name = eventName('handle', name);
    if (typeof fn !== 'function') {
      const message = `espial: handle(): fn must be a function (received ${describe(fn)})`;
      throw espialError('ERR_INVALID_ARG_TYPE', message, TypeError);
    }
    const held = this.#handlers.get(name);
    if (held) {
      held.fn = fn;
      return;
    }
    this.#native.serve(name); // throws past the bound: then nothing is served
    this.#handlers.set(name, { fn, running: 0, queue: [] });
  }

  unhandle(name) {
    name = eventName('unhandle', name);
    const held = this.#handlers.get(name);
    if (!held) return;
    this.#handlers.delete(name);
    this.#native.unserve(name);
    // Waiting for a turn: they will not get one.
    for (const { from, id } of held.queue) this.#native.reply(from, id, KIND.NO_HANDLER, EMPTY, '', '');
    held.queue.length = 0;
  }

  /** A `calls` run from the addon. */
  dispatch(calls) {
    forEachCall(calls, (name, from, kind, id, data, start, end) => {
      if (kind <= KIND.REQUEST_BINARY) this.#incoming(name, from, kind, id, data, start, end);
      else this.#answered(from, kind, id, data, start, end);
    });
  }

  #incoming(name, from, kind, id, data, start, end) {
    const held = this.#handlers.get(name);
    if (!held) {
      this.#native.reply(from, id, KIND.NO_HANDLER, EMPTY, '', '');
      return;
    }
    // The core checked JSON text is JSON; binary data is copied out of the shared run.
    const value = kind === KIND.REQUEST_BINARY ? Buffer.from(data.subarray(start, end)) : decodePayload(data, start, end, false);
    held.queue.push({ from, id, value });
    this.#runHandlers(name, held);
  }

  #runHandlers(name, held) {
    while (held.running < this.#concurrency && held.queue.length > 0) {
      const { from, id, value } = held.queue.shift();
      held.running++;
      this.#runOne(held, from, id, value).finally(() => {
        held.running--;
        if (this.#handlers.get(name) === held) this.#runHandlers(name, held);
      });
    }
  }

  async #runOne(held, from, id, value) {
    let result;
    try {
      result = await held.fn.call(this.#espial, value, this.#nodeOf(from));
    } catch (err) {
      this.#replyError(from, id, err);
      return;
    }
    let encoded;
    try {
      encoded = encodePayload(result === undefined ? null : result);
    } catch (err) {
      this.#replyError(from, id, err);
      return;
    }
    const bytes = encoded.binary ? encoded.payload : Buffer.from(encoded.payload);
    this.#native.reply(from, id, encoded.binary ? KIND.VALUE_BINARY : KIND.VALUE_JSON, bytes, '', '');
  }

  // Only the code and the message cross, never the stack.
  #replyError(from, id, err) {
    const isObject = err !== null && typeof err === 'object';
    let code = isObject && typeof err.code === 'string' ? err.code : isObject && typeof err.name === 'string' ? err.name : 'Error';
    code = Buffer.byteLength(code) > MAX_REMOTE_CODE ? code.slice(0, MAX_REMOTE_CODE / 4) : code;
    const message = isObject && typeof err.message === 'string' ? err.message : describe(err);
    this.#native.reply(from, id, KIND.REMOTE, EMPTY, code, message);
  }

  #answered(from, kind, id, data, start, end) {
    const p = this.#pending.get(id);
    if (!p) return; // aborted just before its answer crossed
    this.#pending.delete(id);
    this.#release(p.target);
    p.settle(kind, data, start, end);
  }

  /** The members serving `name`, as ids. */
  servers(name) {
    return this.#native.servers(name);
  }

  /**
   * @returns {Promise<unknown>}
   */
  request(name, data, target, options) {
    name = eventName('request', name);
    if (options === undefined && target !== null && typeof target === 'object' && typeof target.id !== 'string') {
      options = target;
      target = undefined;
    }
    const { timeout, signal } = this.#options('request', options);
    const targetId = this.#targetId(target);
    const encoded = encodePayload(data);
    const bytes = encoded.binary ? encoded.payload : Buffer.from(encoded.payload);
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason));
    if (targetId === this.#selfId) return this.#callLocal(name, encoded, bytes, timeout, signal);
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const waiter = { target: targetId, name, start: undefined };
      let timer;
      let requestId;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        done();
        if (requestId === undefined) {
          this.#unwait(waiter);
        } else if (this.#pending.delete(requestId)) {
          this.#native.cancelRequest(requestId);
          this.#release(waiter.chosen);
        }
        reject(new AbortError(signal.reason));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      waiter.start = (chosen) => {
        const left = Math.max(0, timeout - (performance.now() - started));
        clearTimeout(timer);
        const got = this.#native.request(name, chosen, encoded.binary, bytes, left);
        if (typeof got !== 'number') {
          done();
          this.#release(chosen);
          reject(espialError(got.code, got.message.replace('send()', `request("${name}")`)));
          return;
        }
        requestId = got;
        waiter.chosen = chosen;
        this.#pending.set(got, {
          target: chosen,
          fail: (err) => {
            done();
            reject(err);
          },
          settle: (kind, payload, start, end) => {
            done();
            const from = this.#nodeOf(chosen);
            if (kind === KIND.VALUE_JSON || kind === KIND.VALUE_BINARY) {
              const binary = kind === KIND.VALUE_BINARY;
              resolve(binary ? Buffer.from(payload.subarray(start, end)) : decodePayload(payload, start, end, false));
              return;
            }
            reject(this.#failure(name, chosen, from, kind, payload, start, end, timeout));
          },
        });
      };
      // Waiting for room counts against the timeout too.
      timer = setTimeout(() => {
        if (requestId !== undefined) return; // the core times it out
        done();
        this.#unwait(waiter);
        reject(timeoutError(name, targetId ?? 'any', timeout));
      }, timeout);
      waiter.fail = (err) => {
        done();
        reject(err);
      };
      this.#waiting.push(waiter);
      this.#pump();
      if (requestId === undefined && waiter.target === undefined && this.#pick(name) === null) {
        // Nobody serves it: nothing to wait for.
        done();
        this.#unwait(waiter);
        reject(espialError('ERR_ESPIAL_NO_HANDLER', `espial: request("${name}"): no node serves "${name}"`));
      }
    });
  }

  #failure(name, id, from, kind, payload, start, end, timeout) {
    const where = `espial: request("${name}") to node ${id}`;
    switch (kind) {
      case KIND.REMOTE: {
        const codeLen = payload[start];
        const code = payload.toString('utf8', start + 1, start + 1 + codeLen);
        const message = payload.toString('utf8', start + 1 + codeLen, end);
        const err = espialError('ERR_ESPIAL_REMOTE', `${where}: the handler failed: ${message}`);
        err.remote = { code, message };
        err.from = from;
        return err;
      }
      case KIND.NO_HANDLER:
        return espialError('ERR_ESPIAL_NO_HANDLER', `${where}: it does not serve "${name}"`);
      case KIND.BUSY:
        return espialError('ERR_ESPIAL_BUSY', `${where}: it holds the most unanswered requests from this node it takes`);
      case KIND.TOO_LARGE:
        return espialError('ERR_ESPIAL_MESSAGE_TOO_LARGE', `${where}: its reply was over max_message_size (this node's or its own)`);
      case KIND.TIMEOUT:
        return timeoutError(name, id, timeout);
      case KIND.TARGET_LEFT:
      default:
        return espialError('ERR_ESPIAL_TARGET_LEFT', `${where}: the node left the cluster before it replied`);
    }
  }

  #options(method, options) {
    if (options === undefined || options === null) return { timeout: this.#defaultTimeout, signal: undefined };
    if (typeof options !== 'object') {
      throw espialError('ERR_INVALID_ARG_TYPE', `espial: ${method}(): options must be an object (received ${describe(options)})`, TypeError);
    }
    let { timeout, signal } = options;
    if (timeout === undefined) timeout = this.#defaultTimeout;
    else if (!Number.isInteger(timeout) || timeout < 1 || timeout > 2 ** 31 - 1) {
      throw espialError('ERR_INVALID_ARG_VALUE', `espial: ${method}(): timeout must be a whole number of ms from 1 to 2^31-1 (received ${describe(timeout)})`, TypeError);
    }
    if (signal !== undefined && (signal === null || typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function')) {
      throw espialError('ERR_INVALID_ARG_TYPE', `espial: ${method}(): signal must be an AbortSignal (received ${describe(signal)})`, TypeError);
    }
    return { timeout, signal };
  }

  #targetId(target) {
    if (target === undefined || target === null) return undefined;
    if (target === 'master') {
      const master = this.#espial.get_master();
      if (!master) throw espialError('ERR_ESPIAL_UNKNOWN_TARGET', 'espial: request(): there is no master');
      return master.id;
    }
    if (typeof target === 'string' && target.length > 0) return target;
    if (typeof target === 'object' && typeof target.id === 'string' && target.id.length > 0) return target.id;
    throw espialError('ERR_INVALID_ARG_TYPE', `espial: request(): target must be a node object, a node id, 'master' or omitted (received ${describe(target)})`, TypeError);
  }

  // The least busy server of `name` with room (in flight to it), ties broken round-robin;
  // null if nobody serves it, undefined if every server is at its bound.
  #pick(name) {
    const servers = this.#native.servers(name);
    if (servers.length === 0) return null;
    const from = (this.#cursor.get(name) ?? 0) % servers.length;
    let best;
    let bestLoad = Infinity;
    for (let i = 0; i < servers.length; i++) {
      const id = servers[(from + i) % servers.length];
      const load = this.#inflight.get(id) ?? 0;
      if (load < this.#maxPerTarget && load < bestLoad) {
        best = id;
        bestLoad = load;
      }
    }
    if (best !== undefined) this.#cursor.set(name, from + 1);
    return best;
  }

  // Starts waiting requests while there is room, oldest first; one whose target is at its
  // bound lets the others by.
  #pump() {
    for (let i = 0; i < this.#waiting.length && this.#total < this.#maxRequests; ) {
      const w = this.#waiting[i];
      const chosen = w.target ?? this.#pick(w.name);
      if (chosen === null || chosen === undefined || (this.#inflight.get(chosen) ?? 0) >= this.#maxPerTarget) {
        i++;
        if (i > 1024) break; // bounded work per release; the rest wait for the next
        continue;
      }
      this.#waiting.splice(i, 1);
      this.#inflight.set(chosen, (this.#inflight.get(chosen) ?? 0) + 1);
      this.#total++;
      w.start(chosen);
    }
  }

  #unwait(waiter) {
    const i = this.#waiting.indexOf(waiter);
    if (i >= 0) this.#waiting.splice(i, 1);
  }

  #release(target) {
    const n = (this.#inflight.get(target) ?? 1) - 1;
    if (n === 0) this.#inflight.delete(target);
    else this.#inflight.set(target, n);
    this.#total--;
    if (this.#waiting.length > 0) queueMicrotask(() => this.#pump());
  }

  /** In flight now: total and per target (for tests and stats). */
  inFlight() {
    return { total: this.#total, perTarget: Math.max(0, ...this.#inflight.values()), waiting: this.#waiting.length };
  }

  /**
   * Asks every member serving `name`; settles at the deadline or once all answered.
   * @returns {Promise<Array<{ from: object, value?: unknown, error?: Error }>>}
   */
  async query(name, data, options) {
    name = eventName('query', name);
    const { timeout, signal } = this.#options('query', options);
    if (signal?.aborted) throw new AbortError(signal.reason);
    const ids = this.#native.servers(name);
    const asked = ids.map((id) =>
      this.request(name, data, id, { timeout, signal }).then(
        (value) => ({ from: this.#nodeOf(id), value }),
        (error) => ({ from: this.#nodeOf(id), error }),
      ),
    );
    const results = await Promise.all(asked);
    if (signal?.aborted) throw new AbortError(signal.reason);
    return results;
  }

  /** exit(): requests waiting or in flight fail as the node is not running. */
  failAll() {
    const err = () => espialError('ERR_ESPIAL_NOT_RUNNING', 'espial: request(): the node is not running');
    const pending = [...this.#pending.values()];
    const waiting = this.#waiting.splice(0);
    this.#pending.clear();
    this.#inflight.clear();
    this.#total = 0;
    for (const p of pending) p.fail(err());
    for (const w of waiting) w.fail(err());
  }

  // A request to this very node ('master' when it is the master): its own handler, the data
  // through the same encoding as over the wire, the same timeout, signal and errors.
  async #callLocal(name, encoded, bytes, timeout, signal) {
    const held = this.#handlers.get(name);
    const where = `espial: request("${name}") to node ${this.#selfId}`;
    if (!held) throw espialError('ERR_ESPIAL_NO_HANDLER', `${where}: it does not serve "${name}"`);
    const value = encoded.binary ? Buffer.from(bytes) : JSON.parse(encoded.payload);
    let timer;
    let onAbort;
    const stop = new Promise((_, reject) => {
      timer = setTimeout(() => reject(timeoutError(name, this.#selfId, timeout)), timeout);
      onAbort = () => reject(new AbortError(signal.reason));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    const run = (async () => {
      try {
        return await held.fn.call(this.#espial, value, this.#nodeOf(this.#selfId));
      } catch (err) {
        const isObject = err !== null && typeof err === 'object';
        const code = isObject && typeof err.code === 'string' ? err.code : isObject && typeof err.name === 'string' ? err.name : 'Error';
        const message = isObject && typeof err.message === 'string' ? err.message : describe(err);
        const failed = espialError('ERR_ESPIAL_REMOTE', `${where}: the handler failed: ${message}`);
        failed.remote = { code, message };
        throw failed;
      }
    })();
    try {
      const result = await Promise.race([run, stop]);
      const out = encodePayload(result === undefined ? null : result);
      return out.binary ? Buffer.from(out.payload) : JSON.parse(out.payload);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      run.catch(() => {});
    }
  }
}

module.exports = { Requests, AbortError, KIND, forEachCall };
