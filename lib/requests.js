'use strict';

// Request and reply (handle, unhandle, request, query). The core correlates: it numbers each
// request, keeps its target and deadline, checks every reply against them and fails a
// request at once when its target is removed (src/core/calls.rs says why it lives there).
// What lives here is what only JavaScript can do: run handlers (at most
// max_handler_concurrency at a time per name), settle Promises, honour AbortSignals, and make
// request() wait, as send() does under backpressure, while this node has max_requests in
// flight or the target max_requests_per_target. Requests started in one tick cross into the
// addon together at its end, and so do the replies of one tick (lib/call-batch.js), as sends
// do: one native call, one step of the node and one write for all of them.

const { espialError } = require('./errors.js');
const { eventName, encodePayload, decodePayload } = require('./events.js');
const { describe } = require('./options.js');
const { RequestBatch, ReplyBatch } = require('./call-batch.js');

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
// A batch of requests or replies is handed over at the end of the tick, or at once past
// this many payload bytes (so that a tick of large ones is not all held in one buffer).
const FLUSH_BYTES = 256 * 1024;
// A microtask from a settled promise's then() costs no async_hooks resource, unlike
// queueMicrotask() (lib/send-queue.js says more).
const RESOLVED = Promise.resolve();

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

/**
 * One request of ours, from request() until it settles. One object with the request's
 * state rather than a closure per step: a timer only while it waits for room (once handed
 * over, the core times it out), an abort listener only with a signal.
 */
class Call {
  constructor(name, target, payload, binary, timeout, signal, resolve, reject) {
    this.name = name;
    this.target = target; // the id asked for, or undefined for whoever serves `name`
    this.chosen = undefined; // the node it went to, once started
    this.id = 0; // the core's id once handed over (the core's ids start at 1)
    this.payload = payload; // JSON text or bytes, until started
    this.binary = binary;
    this.timeout = timeout;
    this.signal = signal;
    this.resolve = resolve;
    this.reject = reject;
    this.timer = undefined; // while it waits for room
    this.waitingSince = 0;
    this.onAbort = undefined;
    this.ended = false; // settled, or about to be
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
  #pending = new Map(); // the core's id -> Call, once handed over
  #inflight = new Map(); // target id -> requests in flight to it
  #total = 0;
  #waiting = []; // Calls waiting for room, in order
  #cursor = new Map(); // name -> round-robin position among its servers
  #requestBatch = new RequestBatch(); // requests started this tick, not handed over yet
  #batched = []; // their Calls, in the same order
  #replyBatch = new ReplyBatch(); // replies of this tick, not handed over yet
  #flushRequestsLater = () => this.#flushRequests();
  #flushRepliesLater = () => this.#flushReplies();
  #pumpLater = () => this.#pump();
  #checkedName; // the last name request() checked (the check depends on the name alone)

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
    for (const { from, id } of held.queue) this.#reply(from, id, KIND.NO_HANDLER, EMPTY);
    held.queue.length = 0;
  }

  /** Hands over the requests and replies of this tick now (exit() calls it first). */
  flush() {
    this.#flushRequests();
    this.#flushReplies();
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
      this.#reply(from, id, KIND.NO_HANDLER, EMPTY);
      return;
    }
    // The core checked JSON text is JSON; binary data is copied out of the shared run.
    const value = kind === KIND.REQUEST_BINARY ? Buffer.from(data.subarray(start, end)) : decodePayload(data, start, end, false);
    if (held.running < this.#concurrency && held.queue.length === 0) this.#runOne(name, held, from, id, value);
    else held.queue.push({ from, id, value });
  }

  #runHandlers(name, held) {
    while (held.running < this.#concurrency && held.queue.length > 0) {
      const { from, id, value } = held.queue.shift();
      this.#runOne(name, held, from, id, value);
    }
  }

  // Runs the handler on one request. A value is replied at once and its turn is over when
  // this returns (the caller goes on with the queue); a Promise, or any thenable, settles
  // as `await` would settle it, and its turn ends then.
  #runOne(name, held, from, id, value) {
    held.running++;
    let result;
    try {
      result = held.fn.call(this.#espial, value, this.#nodeOf(from));
      if (result !== null && (typeof result === 'object' || typeof result === 'function') && typeof result.then === 'function') {
        Promise.resolve(result).then(
          (settled) => {
            this.#replyValue(from, id, settled);
            this.#handlerDone(name, held);
          },
          (err) => {
            this.#replyError(from, id, err);
            this.#handlerDone(name, held);
          },
        );
        return;
      }
    } catch (err) {
      held.running--;
      this.#replyError(from, id, err);
      return;
    }
    held.running--;
    this.#replyValue(from, id, result);
  }

  #handlerDone(name, held) {
    held.running--;
    if (this.#handlers.get(name) === held) this.#runHandlers(name, held);
  }

  #replyValue(from, id, result) {
    let encoded;
    try {
      encoded = encodePayload(result === undefined ? null : result);
    } catch (err) {
      this.#replyError(from, id, err);
      return;
    }
    this.#reply(from, id, encoded.binary ? KIND.VALUE_BINARY : KIND.VALUE_JSON, encoded.payload);
  }

  // A value or NO_HANDLER, handed over with the other replies of this tick.
  #reply(from, id, kind, payload) {
    const batch = this.#replyBatch;
    batch.push(from, id, kind, payload);
    if (batch.count === 1) RESOLVED.then(this.#flushRepliesLater);
    else if (batch.bytes >= FLUSH_BYTES) this.#flushReplies();
  }

  #flushReplies() {
    if (this.#replyBatch.count > 0) this.#replyBatch.send(this.#native);
  }

  // Only the code and the message cross, never the stack. (Rare: on its own, after the
  // replies before it.)
  #replyError(from, id, err) {
    const isObject = err !== null && typeof err === 'object';
    let code = isObject && typeof err.code === 'string' ? err.code : isObject && typeof err.name === 'string' ? err.name : 'Error';
    code = Buffer.byteLength(code) > MAX_REMOTE_CODE ? code.slice(0, MAX_REMOTE_CODE / 4) : code;
    const message = isObject && typeof err.message === 'string' ? err.message : describe(err);
    this.#flushReplies();
    this.#native.reply(from, id, KIND.REMOTE, EMPTY, code, message);
  }

  #answered(from, kind, id, data, start, end) {
    const call = this.#pending.get(id);
    if (call === undefined) return; // aborted just before its answer crossed
    this.#pending.delete(id);
    this.#release(call.chosen);
    this.#end(call);
    if (kind === KIND.VALUE_JSON || kind === KIND.VALUE_BINARY) {
      let value;
      try {
        value = kind === KIND.VALUE_BINARY ? Buffer.from(data.subarray(start, end)) : decodePayload(data, start, end, false);
      } catch (err) {
        call.reject(err);
        return;
      }
      call.resolve(value);
      return;
    }
    call.reject(this.#failure(call.name, call.chosen, this.#nodeOf(call.chosen), kind, data, start, end, call.timeout));
  }

  /** The members serving `name`, as ids. */
  servers(name) {
    return this.#native.servers(name);
  }

  /**
   * @returns {Promise<unknown>}
   */
  request(name, data, target, options) {
    if (name !== this.#checkedName) this.#checkedName = eventName('request', name);
    if (options === undefined && target !== null && typeof target === 'object' && typeof target.id !== 'string') {
      options = target;
      target = undefined;
    }
    const { timeout, signal } = this.#options('request', options);
    const targetId = this.#targetId(target);
    const encoded = encodePayload(data);
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason));
    if (targetId === this.#selfId) return this.#callLocal(name, encoded, timeout, signal);
    let call;
    const promise = new Promise((resolve, reject) => {
      call = new Call(name, targetId, encoded.payload, encoded.binary, timeout, signal, resolve, reject);
    });
    if (signal !== undefined) {
      call.onAbort = () => this.#abort(call);
      signal.addEventListener('abort', call.onAbort, { once: true });
    }
    if (this.#waiting.length === 0 && this.#total < this.#maxRequests) {
      // Room at once (the usual case): no timer, no queue.
      const chosen = targetId ?? this.#pick(name);
      if (chosen === null) {
        this.#noHandler(call);
        return promise;
      }
      if (chosen !== undefined && (this.#inflight.get(chosen) ?? 0) < this.#maxPerTarget) {
        this.#start(call, chosen);
        return promise;
      }
    }
    // Waiting for room counts against the timeout too.
    call.waitingSince = performance.now();
    call.timer = setTimeout(() => {
      call.timer = undefined;
      if (call.ended || call.chosen !== undefined) return; // started: the core times it out
      this.#end(call);
      this.#unwait(call);
      call.reject(timeoutError(name, targetId ?? 'any', timeout));
    }, timeout);
    this.#waiting.push(call);
    this.#pump();
    if (call.chosen === undefined && !call.ended && targetId === undefined && this.#pick(name) === null) {
      // Nobody serves it: nothing to wait for.
      this.#unwait(call);
      this.#noHandler(call);
    }
    return promise;
  }

  #noHandler(call) {
    this.#end(call);
    call.reject(espialError('ERR_ESPIAL_NO_HANDLER', `espial: request("${call.name}"): no node serves "${call.name}"`));
  }

  // Settled (or about to be): no timer, no abort listener any more.
  #end(call) {
    call.ended = true;
    if (call.timer !== undefined) {
      clearTimeout(call.timer);
      call.timer = undefined;
    }
    if (call.onAbort !== undefined) call.signal.removeEventListener('abort', call.onAbort);
  }

  #abort(call) {
    if (call.ended) return;
    this.#end(call);
    if (call.chosen === undefined) {
      this.#unwait(call);
    } else if (call.id === 0) {
      // Still in this tick's batch: it goes, and is cancelled as soon as it has an id.
      this.#release(call.chosen);
    } else if (this.#pending.delete(call.id)) {
      this.#native.cancelRequest(call.id);
      this.#release(call.chosen);
    }
    call.reject(new AbortError(call.signal.reason));
  }

  // Counts the request against its target and adds it to this tick's batch.
  #start(call, chosen) {
    this.#inflight.set(chosen, (this.#inflight.get(chosen) ?? 0) + 1);
    this.#total++;
    call.chosen = chosen;
    let left = call.timeout;
    if (call.timer !== undefined) {
      clearTimeout(call.timer);
      call.timer = undefined;
      left = Math.max(0, call.timeout - (performance.now() - call.waitingSince));
    }
    const batch = this.#requestBatch;
    batch.push(call.name, chosen, call.payload, call.binary, left);
    call.payload = undefined;
    this.#batched.push(call);
    if (this.#batched.length === 1) RESOLVED.then(this.#flushRequestsLater);
    else if (batch.bytes >= FLUSH_BYTES) this.#flushRequests();
  }

  // Hands this tick's requests to the addon: each gets its id, or fails as the core refused it.
  #flushRequests() {
    const calls = this.#batched;
    if (calls.length === 0) return;
    this.#batched = [];
    let ids;
    let failures;
    try {
      ({ ids, failures } = this.#requestBatch.send(this.#native));
    } catch (err) {
      for (const call of calls) {
        if (call.ended) continue;
        this.#end(call);
        this.#release(call.chosen);
        call.reject(err);
      }
      return;
    }
    for (let i = 0; i < calls.length; i++) {
      const call = calls[i];
      const id = ids[i];
      if (call.ended) {
        // Aborted before it went (its room is given back already).
        if (id !== 0) this.#native.cancelRequest(id);
        continue;
      }
      if (id === 0) {
        const { code, message } = failures[i];
        this.#end(call);
        this.#release(call.chosen);
        call.reject(espialError(code, message.replace('send()', `request("${call.name}")`)));
        continue;
      }
      call.id = id;
      this.#pending.set(id, call);
    }
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
      this.#start(w, chosen);
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
    if (this.#waiting.length > 0) RESOLVED.then(this.#pumpLater);
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
    this.#flushRequests();
    const err = () => espialError('ERR_ESPIAL_NOT_RUNNING', 'espial: request(): the node is not running');
    const pending = [...this.#pending.values()];
    const waiting = this.#waiting.splice(0);
    this.#pending.clear();
    this.#inflight.clear();
    this.#total = 0;
    for (const call of [...pending, ...waiting]) {
      if (call.ended) continue;
      this.#end(call);
      call.reject(err());
    }
  }

  // A request to this very node ('master' when it is the master): its own handler, the data
  // through the same encoding as over the wire, the same timeout, signal and errors.
  async #callLocal(name, encoded, timeout, signal) {
    const held = this.#handlers.get(name);
    const where = `espial: request("${name}") to node ${this.#selfId}`;
    if (!held) throw espialError('ERR_ESPIAL_NO_HANDLER', `${where}: it does not serve "${name}"`);
    const value = encoded.binary ? Buffer.from(encoded.payload) : JSON.parse(encoded.payload);
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
