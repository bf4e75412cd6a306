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
  #nameIndex = new Map(); // name -> index in #names, once a batch has more than one name
  #targets = [];
  #broadcast = -1; // index of `null` (every member) in #targets, once used
  // Most batches name one event and one target: those need no Map. The first single target
  // id is kept with its index in #targets; #single holds them all once a second id comes.
  #firstId = null;
  #firstIdIndex = -1;
  #single = new Map(); // one target id -> index in #targets
  #multi = new Map(); // JSON of several ids -> index in #targets
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
    if (this.#nameIndex.size > 0) this.#nameIndex.clear();
    this.#targets = [];
    this.#broadcast = -1;
    this.#firstId = null;
    if (this.#single.size > 0) this.#single.clear();
    if (this.#multi.size > 0) this.#multi.clear();
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
    const names = this.#names;
    if (names.length === 0) return names.push(name) - 1;
    if (names.length === 1 && names[0] === name) return 0;
    if (this.#nameIndex.size === 0) this.#nameIndex.set(names[0], 0);
    let i = this.#nameIndex.get(name);
    if (i === undefined) {
      i = names.push(name) - 1;
      this.#nameIndex.set(name, i);
    }
    return i;
  }

  #targetsOf(ids) {
    if (ids === null) {
      if (this.#broadcast < 0) this.#broadcast = this.#targets.push(null) - 1;
      return this.#broadcast;
    }
    if (ids.length !== 1) {
      // Several ids are keyed by their JSON, which no single id can be confused with because
      // the two live in different maps.
      const key = JSON.stringify(ids);
      let i = this.#multi.get(key);
      if (i === undefined) {
        i = this.#targets.push(ids) - 1;
        this.#multi.set(key, i);
      }
      return i;
    }
    // One target is the common case, and one target per batch the most common.
    const id = ids[0];
    if (this.#firstId === null) {
      this.#firstId = id;
      return (this.#firstIdIndex = this.#targets.push(ids) - 1);
    }
    if (id === this.#firstId) return this.#firstIdIndex;
    if (this.#single.size === 0) this.#single.set(this.#firstId, this.#firstIdIndex);
    let i = this.#single.get(id);
    if (i === undefined) {
      i = this.#targets.push(ids) - 1;
      this.#single.set(id, i);
    }
    return i;
  }
}

module.exports = { Outbox, FIELDS };
