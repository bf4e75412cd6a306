'use strict';

// The sends of a node, from send() to the settling of their Promises. Sends of one tick
// cross into the addon in one call at the end of the tick (a microtask), which is what lets
// a node send hundreds of thousands of small messages a second: one native call, one
// Promise and one trip to the Rust node task per batch instead of per message (the Outbox
// of lib/packed.js packs them). Order is kept: a batch is handed over before the next one,
// flush() hands the pending one over at once (join, leave and exit call it first), and
// sends settle in the order they were made. The payload is copied when queued, so a Buffer
// changed after send() is sent as it was.

const { Outbox } = require('./packed.js');
const { espialError } = require('./errors.js');
const { messageTooLarge } = require('./events.js');

// A microtask from a settled promise's then() costs no async_hooks resource, unlike
// queueMicrotask(), which builds one per call: a send a message at a time paid for it.
const RESOLVED = Promise.resolve();

// Batches settle in microtasks, so `for (…) await send(…)` would never let the event loop
// turn: no timer, no I/O, no membership news while it runs. After this many batches settled
// without the loop turning, the next ones settle on the next turn (setImmediate), in order.
// A loop awaiting every send then yields once per SETTLE_RUN sends, which costs it about
// one event-loop turn per SETTLE_RUN messages.
const SETTLE_RUN = 256;
// The turn is watched (a setImmediate) only once this many batches have settled since the
// count was last reset: watching it for every batch cost a message sent one per turn (a
// ping-pong) an immediate of its own. The count then spans turns, so it can only reach
// SETTLE_RUN sooner than a count per turn would: a loop still yields at least once per
// SETTLE_RUN sends.
const WATCH_AFTER = 32;

class SendQueue {
  #handOver; // (batch) => the addon's answer; see the constructor
  #maxMessageSize;
  #outbox = new Outbox(); // sends of this tick, handed over together
  #pending = null; // { results, settle } of the sends in #outbox, while there are any
  #inFlight = new Map(); // batch id -> { settle, count, outcome } until it settles, in send order
  #heldBatch = 0; // keys below 0 in #inFlight: outcomes known at once, held behind waiting batches
  #flushLater = () => this.flush();
  #settledInTurn = 0; // batches settled since the count was reset by a turn of the event loop
  #watchingTurn = false; // a setImmediate is pending that marks the next turn
  #deferred = []; // settle, outcome, settle, outcome, …: batches waiting for the next turn
  #onTurn = () => this.#turned();

  /**
   * @param {(batch: { names: string[], targets: Array<string[] | null>, meta: Uint32Array,
   *   payload: Buffer, count: number }) => null | Array<{ code: string, message: string } | null> | number} handOver
   *   hands a packed batch to the addon (NativeNode.sendBatch), which answers null when every
   *   message went, one entry per message (null or its failure) when any was refused, or a
   *   batch id whose outcome comes later, through sent(); if it throws, every send of the
   *   batch rejects with what it threw
   * @param {number} maxMessageSize max_message_size, in bytes
   */
  constructor(handOver, maxMessageSize) {
    this.#handOver = handOver;
    this.#maxMessageSize = maxMessageSize;
  }

  /**
   * Queues one message for the end of this tick.
   * @param {string} name a checked event name
   * @param {string[] | null} ids target ids, or null for every member that joined it
   * @param {string | Uint8Array} payload JSON text, or the bytes of a binary message
   * @returns {Promise<void>} settles once the message is handed over, or rejects with why not
   */
  queue(name, ids, payload) {
    const outbox = this.#outbox;
    const index = outbox.count;
    const size = outbox.push(name, ids, payload, this.#maxMessageSize);
    if (outbox.count === index) return Promise.reject(messageTooLarge(name, size, this.#maxMessageSize));
    let pending = this.#pending;
    if (pending === null) {
      pending = { results: null, settle: null };
      pending.results = new Promise((resolve) => {
        pending.settle = resolve;
      });
      RESOLVED.then(this.#flushLater);
      this.#pending = pending;
    }
    return pending.results.then((failures) => (failures === null ? undefined : sendFailure(failures[index])));
  }

  /** Hands the sends queued so far to the addon now (a no-op if there are none). */
  flush() {
    const pending = this.#pending;
    if (pending === null) return;
    this.#pending = null;
    const batch = this.#outbox.take();
    let results;
    try {
      results = this.#handOver(batch);
    } catch (err) {
      // The same failure, however the addon reports it: every send of the batch rejects.
      results = { thrown: err };
    }
    if (typeof results === 'number') {
      // A connection is backlogged: the outcome comes back through sent() with this id.
      this.#inFlight.set(results, { settle: pending.settle, count: batch.count, outcome: undefined });
    } else if (this.#inFlight.size === 0) {
      // Handed over (null) or refused (one entry per message): settled now.
      this.#settle(pending.settle, results);
    } else {
      // Sends settle in the order they were made: after the batches still waiting.
      this.#inFlight.set(--this.#heldBatch, { settle: pending.settle, count: batch.count, outcome: results });
    }
  }

  /**
   * A backlogged batch's outcome (the addon's `sent` event): null when every message went,
   * else one entry per message. Batches settle in the order they were sent, like a stream's
   * write callbacks: an outcome that arrives early (its connections were not backlogged, an
   * earlier batch's were) waits.
   * @param {number} batch the id flush() got from the addon
   * @param {Array<{ code: string, message: string } | null> | null} failures
   */
  sent(batch, failures) {
    const waiting = this.#inFlight.get(batch);
    if (waiting === undefined) return;
    waiting.outcome = failures;
    for (const [id, entry] of this.#inFlight) {
      if (entry.outcome === undefined) break;
      this.#inFlight.delete(id);
      this.#settle(entry.settle, entry.outcome);
    }
  }

  /**
   * Fails every message of every batch still waiting for its outcome with
   * ERR_ESPIAL_NOT_RUNNING: the node has exited, and none of them went. (The addon answers
   * every batch before it stops; this is for one it did not.)
   */
  failAll() {
    for (const [batch, { count, outcome }] of this.#inFlight) {
      if (outcome === undefined) this.sent(batch, new Array(count).fill(NOT_RUNNING));
    }
  }

  // Settles a batch now, or on the next turn of the event loop if SETTLE_RUN batches have
  // settled since it last turned (and then every later one too, until that turn: order).
  #settle(resolve, outcome) {
    if (this.#deferred.length === 0 && this.#settledInTurn < SETTLE_RUN) {
      if (++this.#settledInTurn >= WATCH_AFTER) this.#watchTurn();
      settle(resolve, outcome);
    } else {
      this.#deferred.push(resolve, outcome);
      this.#watchTurn();
    }
  }

  #watchTurn() {
    if (this.#watchingTurn) return;
    this.#watchingTurn = true;
    setImmediate(this.#onTurn);
  }

  // The event loop turned: settle what waited for it, and count afresh.
  #turned() {
    this.#watchingTurn = false;
    const deferred = this.#deferred;
    this.#deferred = [];
    this.#settledInTurn = deferred.length / 2;
    if (this.#settledInTurn > 0) this.#watchTurn();
    for (let i = 0; i < deferred.length; i += 2) settle(deferred[i], deferred[i + 1]);
  }
}

// As the addon words it for a batch refused after exit (src/binding/errors.rs).
const NOT_RUNNING = Object.freeze({ code: 'ERR_ESPIAL_NOT_RUNNING', message: 'espial: send(): the node is not running' });

// Settles a batch's sends: `outcome` is null (all sent), one entry per message (null or
// its failure), or { thrown } when the addon threw, which rejects every send of the batch.
function settle(resolve, outcome) {
  resolve(outcome !== null && outcome.thrown !== undefined ? Promise.reject(outcome.thrown) : outcome);
}

// One message's entry of a batch's outcome: null when sent, else why not.
function sendFailure(failure) {
  if (failure == null) return;
  throw espialError(failure.code, failure.message);
}

module.exports = { SendQueue };
