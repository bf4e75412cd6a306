'use strict';

// The sends of one tick, packed the way the addon takes them (NativeNode.sendBatch): event
// names and target lists each once, four numbers per message in one Uint32Array, and every
// payload back to back in one Buffer. A tick's messages then cross into Rust as five values
// whatever their number, instead of a string, a Buffer and an array per message: for small
// messages that conversion used to cost more than encrypting them.

/** Numbers per message in `meta`: name index, targets index, payload bytes, binary (0/1). */
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

module.exports = { Outbox, FIELDS };
