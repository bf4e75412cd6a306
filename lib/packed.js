'use strict';

// The packed formats in which messages cross between JavaScript and the addon, both
// directions, on the JavaScript side (src/binding/packed.rs is the Rust side of the same):
//
// - A send batch (JS -> Rust, NativeNode.sendBatch): the sends of one tick as five values
//   whatever their number: event names once each, target lists once each (null: every
//   member that joined the event), FIELDS numbers per message in one Uint32Array (name
//   index, targets index, payload bytes, binary 0/1), and every payload back to back in one
//   Buffer. Before, a string, a Buffer and an array crossed per message, and for small
//   messages that conversion cost more than encrypting them. The Outbox writes it.
// - A delivery (Rust -> JS, a `messages` event): a run of received messages as one object
//   { strings, count, data }: event names and sender ids once each in `strings`; in `data`,
//   the payloads back to back, then FIELDS little-endian u32s per message (name index,
//   sender index, payload bytes, binary 0/1). forEachDelivery reads it.
//
// unpackBatch and packDeliveries, the other half of each, are what the addon does; tests use
// them to stand in for it.

/** Numbers per message: in a batch's `meta`, and in the trailer of a delivery's `data`. */
const FIELDS = 4;
const FIRST_BYTES = 64 * 1024;
const FIRST_MESSAGES = 256;
/** Payload space kept for the next batch; a larger buffer (after big messages) is let go. */
const KEEP_BYTES = 1 << 20;

class Outbox {
  #names = [];
  #nameIndex = new KeyIndex(); // name -> index in #names
  #targets = [];
  #broadcast = -1; // index of `null` (every member) in #targets, once used
  // Several ids are keyed by their JSON, which no single id can be confused with because
  // the two have separate indexes.
  #single = new KeyIndex(); // one target id -> index in #targets
  #multi = new KeyIndex(); // JSON of several ids -> index in #targets
  #meta = new Uint32Array(FIELDS * FIRST_MESSAGES);
  #payload = Buffer.allocUnsafeSlow(FIRST_BYTES);
  #used = 0;
  count = 0;

  /**
   * Adds one message. Its bytes are copied now, so changing a Buffer after send() does not
   * change what is sent.
   * @param {string} name
   * @param {string[] | null} ids target ids, or null for every member that joined the event
   * @param {string | Uint8Array} payload JSON text, or the bytes of a binary message
   * @param {number} max the largest payload in bytes (max_message_size)
   * @returns {number} the payload's size in bytes; when over `max` nothing is added
   */
  push(name, ids, payload, max) {
    const binary = typeof payload !== 'string';
    let size;
    if (binary) {
      size = payload.byteLength;
      if (size > max) return size;
      this.#reserve(size);
      this.#payload.set(payload, this.#used);
    } else {
      // UTF-8 takes at least one byte per UTF-16 unit and at most three.
      if (payload.length > max) return Buffer.byteLength(payload, 'utf8');
      let room = payload.length * 3;
      if (this.#used + room > this.#payload.length) {
        room = Buffer.byteLength(payload, 'utf8');
        if (room > max) return room;
      }
      this.#reserve(room);
      size = this.#payload.write(payload, this.#used, 'utf8');
      if (size > max) return size;
    }
    if ((this.count + 1) * FIELDS > this.#meta.length) {
      const meta = new Uint32Array(this.#meta.length * 2);
      meta.set(this.#meta);
      this.#meta = meta;
    }
    const at = this.count * FIELDS;
    this.#meta[at] = this.#nameOf(name);
    this.#meta[at + 1] = this.#targetsOf(ids);
    this.#meta[at + 2] = size;
    this.#meta[at + 3] = binary ? 1 : 0;
    this.#used += size;
    this.count++;
    return size;
  }

  /**
   * The batch as sendBatch takes it; the Outbox is empty again afterwards. The views stay
   * valid only until the next push: the addon copies them during the call.
   */
  take() {
    const batch = {
      names: this.#names,
      targets: this.#targets,
      meta: this.#meta.subarray(0, this.count * FIELDS),
      payload: this.#payload.subarray(0, this.#used),
      count: this.count,
    };
    this.#names = [];
    this.#nameIndex.clear();
    this.#targets = [];
    this.#broadcast = -1;
    this.#single.clear();
    this.#multi.clear();
    this.count = 0;
    this.#used = 0;
    if (this.#payload.length > KEEP_BYTES) this.#payload = Buffer.allocUnsafeSlow(FIRST_BYTES);
    return batch;
  }

  #reserve(bytes) {
    const need = this.#used + bytes;
    if (need <= this.#payload.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(need, this.#payload.length * 2));
    this.#payload.copy(grown, 0, 0, this.#used);
    this.#payload = grown;
  }

  #nameOf(name) {
    return this.#nameIndex.indexOf(name, this.#names, name);
  }

  #targetsOf(ids) {
    if (ids === null) {
      if (this.#broadcast < 0) this.#broadcast = this.#targets.push(null) - 1;
      return this.#broadcast;
    }
    if (ids.length === 1) return this.#single.indexOf(ids[0], this.#targets, ids);
    return this.#multi.indexOf(JSON.stringify(ids), this.#targets, ids);
  }
}

// Where each key's value sits in a list. Most batches name one event and one target: the
// first key is compared directly, and a Map is filled only once a second key comes.
class KeyIndex {
  #first = null;
  #firstAt = -1;
  #rest = new Map();

  // The index of `key`, pushing `value` onto `list` the first time the key is seen.
  indexOf(key, list, value) {
    if (key === this.#first) return this.#firstAt;
    if (this.#first === null) {
      this.#first = key;
      return (this.#firstAt = list.push(value) - 1);
    }
    let i = this.#rest.get(key);
    if (i === undefined) {
      i = list.push(value) - 1;
      this.#rest.set(key, i);
    }
    return i;
  }

  clear() {
    this.#first = null;
    if (this.#rest.size > 0) this.#rest.clear();
  }
}

/**
 * Calls `fn(event, from, data, start, end, binary)` for each message of a delivery, in
 * order: the message of custom event `event` from node id `from` is bytes `start` to `end`
 * of `data`, binary data if `binary`, else JSON text. `fn` must not throw.
 * @param {{ strings: string[], count: number, data: Buffer }} messages
 * @param {(event: string, from: string, data: Buffer, start: number, end: number, binary: boolean) => void} fn
 */
function forEachDelivery({ strings, count, data }, fn) {
  const step = FIELDS * 4;
  let start = 0;
  for (let at = data.length - count * step; at < data.length; at += step) {
    const end = start + data.readUInt32LE(at + 8);
    fn(strings[data.readUInt32LE(at)], strings[data.readUInt32LE(at + 4)], data, start, end, data.readUInt32LE(at + 12) === 1);
    start = end;
  }
}

/**
 * Packs messages as the addon delivers them (for tests, which stand in for the addon).
 * @param {Array<{ event: string, from: string, payload: Uint8Array | string, binary?: boolean }>} messages
 * @returns {{ strings: string[], count: number, data: Buffer }}
 */
function packDeliveries(messages) {
  const strings = [];
  const index = new Map();
  const intern = (s) => {
    if (!index.has(s)) index.set(s, strings.push(s) - 1);
    return index.get(s);
  };
  const payloads = messages.map(({ payload }) => Buffer.from(payload));
  const meta = Buffer.alloc(messages.length * FIELDS * 4);
  messages.forEach(({ event, from, binary }, i) => {
    const fields = [intern(event), intern(from), payloads[i].length, binary ? 1 : 0];
    fields.forEach((n, j) => meta.writeUInt32LE(n, (i * FIELDS + j) * 4));
  });
  return { strings, count: messages.length, data: Buffer.concat([...payloads, meta]) };
}

/**
 * The messages of a send batch, as the addon reads them (for tests), each with a copy of
 * its bytes, since the Outbox reuses its buffers.
 * @param {{ names: string[], targets: Array<string[] | null>, meta: Uint32Array, payload: Uint8Array }} batch
 * @returns {Array<{ name: string, ids: string[] | null, binary: boolean, payload: Buffer }>}
 * @throws {Error} if the payload sizes do not cover the payload exactly
 */
function unpackBatch({ names, targets, meta, payload }) {
  const out = [];
  let start = 0;
  for (let at = 0; at < meta.length; at += FIELDS) {
    const end = start + meta[at + 2];
    const bytes = Buffer.from(payload.subarray(start, end));
    out.push({ name: names[meta[at]], ids: targets[meta[at + 1]], binary: meta[at + 3] === 1, payload: bytes });
    start = end;
  }
  if (start !== payload.length || meta.length % FIELDS !== 0) {
    throw new Error(`a batch whose ${meta.length / FIELDS} messages cover ${start} of its ${payload.length} payload bytes`);
  }
  return out;
}

module.exports = { FIELDS, Outbox, forEachDelivery, packDeliveries, unpackBatch };
