'use strict';

// Custom events (join, leave, send): checking event names and targets, and turning data into
// the bytes the addon sends and back. Pure JS, so it can be tested without starting a node.
// Argument mistakes throw at once, by name, like the options do; what can only fail once the
// message is under way (an unknown target, a message over max_message_size) rejects instead.

const { describe } = require('./options.js');
const { espialError } = require('./errors.js');

const MAX_EVENT_NAME_BYTES = 255;

// Names espial itself emits, plus EventEmitter's own: a custom event of one of these names
// would be indistinguishable from the core event, so joining or sending one is refused.
const RESERVED_EVENTS = new Set([
  'listening',
  'added_node',
  'removed_node',
  'updated_node',
  'node_accepted',
  'node_rejected',
  'new_master',
  'promotion',
  'demotion',
  'undelivered',
  'error',
  'newListener',
  'removeListener',
]);

function argError(ErrorType, code, message) {
  return espialError(code, `espial: ${message}`, ErrorType);
}

/**
 * Checks the event name given to join(), leave() or send().
 * @param {string} method the method's name, for the message
 * @param {unknown} event
 * @returns {string} the name
 * @throws {TypeError} if it is not a string of 1 to 255 bytes (UTF-8)
 * @throws {Error} with code ERR_ESPIAL_RESERVED_EVENT if it is a core event's name
 */
function eventName(method, event) {
  const expected = `a string of 1 to ${MAX_EVENT_NAME_BYTES} bytes (UTF-8)`;
  if (typeof event !== 'string') {
    throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', `${method}(): event must be ${expected} (received ${describe(event)})`);
  }
  // Bytes, not characters; an empty name could be confused with no name at all.
  if (event.length === 0 || Buffer.byteLength(event, 'utf8') > MAX_EVENT_NAME_BYTES) {
    throw argError(TypeError, 'ERR_INVALID_ARG_VALUE', `${method}(): event must be ${expected} (received ${describe(event)})`);
  }
  if (RESERVED_EVENTS.has(event)) {
    throw argError(
      Error,
      'ERR_ESPIAL_RESERVED_EVENT',
      `${method}(): "${event}" is one of espial's own events and cannot be a custom event`,
    );
  }
  return event;
}

// The id a target names: an id itself, or a node object's `id`; undefined if it is neither.
function idOf(target) {
  if (typeof target === 'string') return target.length > 0 ? target : undefined;
  if (target !== null && typeof target === 'object' && typeof target.id === 'string' && target.id.length > 0) {
    return target.id;
  }
  return undefined;
}

function badTarget(name, expected, target) {
  const code = typeof target === 'string' || (target !== null && typeof target === 'object' && !Array.isArray(target))
    ? 'ERR_INVALID_ARG_VALUE'
    : 'ERR_INVALID_ARG_TYPE';
  return argError(TypeError, code, `send(): ${name} must be ${expected} (received ${describe(target)})`);
}

/**
 * The ids `send()`'s targets name, or null for "every other member".
 * @param {unknown} targets undefined or null, a node object, an id, or an array of either
 * @returns {string[] | null} the ids, each once, in the order given
 * @throws {TypeError} naming `targets` (or the offending entry)
 */
function targetIds(targets) {
  if (targets === undefined || targets === null) return null;
  if (Array.isArray(targets)) {
    const ids = targets.map((target, i) => {
      const id = idOf(target);
      if (id === undefined) throw badTarget(`targets[${i}]`, 'a node object or a node id', target);
      return id;
    });
    // Each node once: naming a node twice must not send it the message twice.
    return [...new Set(ids)];
  }
  const id = idOf(targets);
  if (id === undefined) {
    throw badTarget('targets', 'a node object, a node id, an array of them, or null for every node', targets);
  }
  return [id];
}

// A Uint8Array (a Buffer is one), also from another realm, whose toStringTag says so.
function isBytes(data) {
  return ArrayBuffer.isView(data) && data[Symbol.toStringTag] === 'Uint8Array';
}

/**
 * Turns send()'s data into what travels: the bytes of a Buffer or Uint8Array as they are
 * (`binary`), anything else as its JSON text, made by JSON.stringify.
 * @param {unknown} data
 * @returns {{ payload: Uint8Array | string, binary: boolean }} the bytes, or the JSON text
 * @throws {TypeError} naming `data` if JSON cannot carry it (undefined, a function, a
 *   symbol, a BigInt, a cycle) or it is binary data other than a Uint8Array
 */
function encodePayload(data) {
  if (isBytes(data)) return { payload: data, binary: true };
  if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer || isSharedArrayBuffer(data)) {
    // JSON would turn these into objects of numbered keys, which is never what was meant.
    throw argError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `send(): data must be a JSON value, a Buffer or a Uint8Array (received ${describe(data)}; wrap its bytes in a Buffer)`,
    );
  }
  let json;
  try {
    json = JSON.stringify(data);
  } catch (err) {
    // A BigInt, a cycle, or a toJSON that throws.
    throw argError(TypeError, 'ERR_INVALID_ARG_VALUE', `send(): data cannot be sent as JSON: ${err.message}`);
  }
  if (json === undefined) {
    // undefined, a function or a symbol: JSON has nothing to send.
    throw argError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `send(): data must be a JSON value, a Buffer or a Uint8Array (received ${describe(data)})`,
    );
  }
  return { payload: json, binary: false };
}

function isSharedArrayBuffer(data) {
  return typeof SharedArrayBuffer === 'function' && data instanceof SharedArrayBuffer;
}

/**
 * The data a listener receives for a message: bytes `start` to `end` of a delivery's
 * packed payloads, as a Buffer (sharing that memory) or as the value their JSON text
 * stands for.
 * @param {Buffer} payloads
 * @param {number} start
 * @param {number} end
 * @param {boolean} binary
 * @returns {unknown}
 * @throws {SyntaxError} if a non-binary payload is not JSON (only a peer that bypasses
 *   index.js could send that)
 */
function decodePayload(payloads, start, end, binary) {
  return binary ? payloads.subarray(start, end) : JSON.parse(payloads.toString('utf8', start, end));
}

/** The rejection of a message over max_message_size. */
function messageTooLarge(event, size, max) {
  return argError(
    Error,
    'ERR_ESPIAL_MESSAGE_TOO_LARGE',
    `send("${event}"): the message is ${size} bytes, over max_message_size (${max} bytes)`,
  );
}

module.exports = {
  RESERVED_EVENTS,
  MAX_EVENT_NAME_BYTES,
  eventName,
  targetIds,
  encodePayload,
  decodePayload,
  messageTooLarge,
};
