'use strict';

// The one place JavaScript makes an espial error. Its `code` is stable: one of the codes
// the native core defines (ErrorCode in src/core/error.rs, exported by the addon as
// errorCodes()), or Node's own code for a bad argument. A code neither knows is a bug in
// espial, caught here rather than handed to users.

const { errorCodes } = require('./load.js').loadBinding();

/** Node's own codes, which espial uses for an argument of the wrong type or value. */
const NODE_CODES = Object.freeze(['ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE']);

/** Every code an error from espial can carry. */
const CODES = Object.freeze([...errorCodes(), ...NODE_CODES]);
const KNOWN = new Set(CODES);

/**
 * An error as espial hands it out: `message` as it is, `code` set.
 * @param {string} code one of CODES
 * @param {string} message the whole message, `espial: …`
 * @param {ErrorConstructor} [Ctor] Error, or TypeError for a bad argument
 * @returns {Error & { code: string }}
 * @throws {Error} if `code` is not one of CODES (a bug in espial)
 */
function espialError(code, message, Ctor = Error) {
  if (!KNOWN.has(code)) throw new Error(`espial: internal error: unknown error code ${String(code)} for "${message}"`);
  const err = new Ctor(message);
  err.code = code;
  return err;
}

module.exports = { espialError, CODES, NODE_CODES };
