'use strict';

// The requests and the replies of one tick, packed to cross into the addon in one call each
// (NativeNode.requestBatch, NativeNode.replyBatch; src/binding/call_batch.rs reads them),
// as a tick's sends cross in one sendBatch (lib/packed.js). One at a time, each request and
// each reply cost a native call, a step of the node and a write() of its own: with 64
// requests in flight that was most of the CPU a request took (BENCHMARKS.md, "Request and
// reply: CPU per request").
//
// - A request batch: handler names and target ids once each, REQUEST_FIELDS numbers per
//   request in one Uint32Array (name index, target index, payload bytes, binary 0/1,
//   timeout ms), the payloads back to back in one Buffer.
// - A reply batch: peer ids once each, REPLY_FIELDS numbers per reply (peer index, kind,
//   the request id's low and high 32 bits, payload bytes), the payloads back to back.

const REQUEST_FIELDS = 5;
const REPLY_FIELDS = 5;
const FIRST_BYTES = 16 * 1024;
const FIRST_ENTRIES = 64;
/** Payload space kept for the next batch; a larger buffer (after big payloads) is let go. */
const KEEP_BYTES = 1 << 20;
const TWO_32 = 2 ** 32;

// Strings each once in a list. Most batches name one handler and one node: the first is
// compared directly, and a Map is filled only once a second comes.
class Strings {
  list = [];
  #first = null;
  #rest = null;

  indexOf(s) {
    if (s === this.#first) return 0;
    if (this.#first === null) {
      this.#first = s;
      this.list.push(s);
      return 0;
    }
    this.#rest ??= new Map();
    let i = this.#rest.get(s);
    if (i === undefined) {
      i = this.list.push(s) - 1;
      this.#rest.set(s, i);
    }
    return i;
  }

  take() {
    const list = this.list;
    this.list = [];
    this.#first = null;
    this.#rest = null;
    return list;
  }
}

// Entries of `fields` numbers and a payload each, for one batch.
class Packer {
  #fields;
  meta;
  payload = Buffer.allocUnsafeSlow(FIRST_BYTES);
  used = 0;
  count = 0;

  constructor(fields) {
    this.#fields = fields;
    this.meta = new Uint32Array(fields * FIRST_ENTRIES);
  }

  // Copies the payload in (JSON text as UTF-8); the index of its entry's first number.
  add(payload) {
    let size;
    if (typeof payload === 'string') {
      // UTF-8 takes at least one byte per UTF-16 unit and at most three.
      let room = payload.length * 3;
      if (this.used + room > this.payload.length) room = Buffer.byteLength(payload, 'utf8');
      this.#reserve(room);
      size = this.payload.write(payload, this.used, 'utf8');
    } else {
      size = payload.byteLength;
      this.#reserve(size);
      this.payload.set(payload, this.used);
    }
    this.used += size;
    if ((this.count + 1) * this.#fields > this.meta.length) {
      const meta = new Uint32Array(this.meta.length * 2);
      meta.set(this.meta);
      this.meta = meta;
    }
    return this.count++ * this.#fields;
  }

  // The views stay valid only until the next add: the addon reads them during the call.
  take() {
    const out = { meta: this.meta.subarray(0, this.count * this.#fields), payload: this.payload.subarray(0, this.used), count: this.count };
    this.count = 0;
    this.used = 0;
    if (this.payload.length > KEEP_BYTES) this.payload = Buffer.allocUnsafeSlow(FIRST_BYTES);
    return out;
  }

  #reserve(bytes) {
    const need = this.used + bytes;
    if (need <= this.payload.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(need, this.payload.length * 2));
    this.payload.copy(grown, 0, 0, this.used);
    this.payload = grown;
  }
}

class RequestBatch {
  #names = new Strings();
  #targets = new Strings();
  #packer = new Packer(REQUEST_FIELDS);
  #ids = new Float64Array(FIRST_ENTRIES);

  get count() {
    return this.#packer.count;
  }

  /** Bytes of payload so far. */
  get bytes() {
    return this.#packer.used;
  }

  /**
   * @param {string} name
   * @param {string} target a node id
   * @param {string | Uint8Array} payload JSON text or bytes (copied now)
   * @param {boolean} binary
   * @param {number} timeout ms, 0 to 2^31-1
   */
  push(name, target, payload, binary, timeout) {
    const start = this.#packer.used;
    const at = this.#packer.add(payload);
    const meta = this.#packer.meta;
    meta[at] = this.#names.indexOf(name);
    meta[at + 1] = this.#targets.indexOf(target);
    meta[at + 2] = this.#packer.used - start;
    meta[at + 3] = binary ? 1 : 0;
    meta[at + 4] = timeout;
  }

  /**
   * Hands the batch to `native.requestBatch` and empties it.
   * @returns {{ ids: Float64Array, failures: Array<{ code: string, message: string } | null> | null }}
   *   `ids[i]` is request i's id (0 if refused); `failures` one entry per request when any was
   */
  send(native) {
    const { meta, payload, count } = this.#packer.take();
    if (this.#ids.length < count) this.#ids = new Float64Array(Math.max(count, this.#ids.length * 2));
    const ids = this.#ids;
    const failures = native.requestBatch(this.#names.take(), this.#targets.take(), meta, payload, ids);
    return { ids, failures };
  }
}

class ReplyBatch {
  #peers = new Strings();
  #packer = new Packer(REPLY_FIELDS);

  get count() {
    return this.#packer.count;
  }

  get bytes() {
    return this.#packer.used;
  }

  /**
   * @param {string} peer the asker's node id
   * @param {number} id its request's id
   * @param {number} kind VALUE_JSON, VALUE_BINARY or NO_HANDLER (lib/requests.js's KIND)
   * @param {string | Uint8Array} payload JSON text or bytes (copied now)
   */
  push(peer, id, kind, payload) {
    const start = this.#packer.used;
    const at = this.#packer.add(payload);
    const meta = this.#packer.meta;
    meta[at] = this.#peers.indexOf(peer);
    meta[at + 1] = kind;
    meta[at + 2] = id % TWO_32;
    meta[at + 3] = Math.floor(id / TWO_32);
    meta[at + 4] = this.#packer.used - start;
  }

  /** Hands the batch to `native.replyBatch` and empties it. */
  send(native) {
    const { meta, payload } = this.#packer.take();
    native.replyBatch(this.#peers.take(), meta, payload);
  }
}

module.exports = { RequestBatch, ReplyBatch, REQUEST_FIELDS, REPLY_FIELDS };
