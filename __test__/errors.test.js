'use strict';

// Every espial error code is defined once, in the native core (ErrorCode in
// src/core/error.rs), and reaches JavaScript as the addon's errorCodes(). These tests hold
// the JavaScript side to that list: index.d.ts's EspialErrorCode, every code the JS source
// names, and lib/errors.js, through which every espial error is made.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { errorCodes } = require('../binding.js');
const { espialError, CODES, NODE_CODES } = require('../lib/errors.js');
const { LOAD_CODES } = require('../lib/load.js');

const ROOT = path.join(__dirname, '..');
const read = (file) => fs.readFileSync(path.join(ROOT, file), 'utf8');

// The string literals of `type EspialErrorCode = | '…' | '…';` in index.d.ts.
function typedCodes() {
  const match = /type EspialErrorCode =([^;]*);/.exec(read('index.d.ts'));
  assert.ok(match, 'index.d.ts declares EspialErrorCode');
  const members = match[1].split('|').map((m) => m.trim()).filter(Boolean);
  for (const member of members) assert.match(member, /^'ERR_[A-Z_]+'$/, `a code, not ${member}`);
  return members.map((m) => m.slice(1, -1));
}

test("index.d.ts's EspialErrorCode is exactly the addon's codes and Node's two", () => {
  const native = errorCodes();
  assert.ok(native.length > 0);
  assert.ok(native.every((code) => code.startsWith('ERR_ESPIAL_')), native.join());
  const typed = typedCodes();
  assert.equal(new Set(typed).size, typed.length, 'each code once');
  // Both ways, so that the message names what is missing on which side.
  const expected = [...native, ...NODE_CODES];
  assert.deepEqual(expected.filter((c) => !typed.includes(c)), [], 'codes of the addon missing from index.d.ts');
  assert.deepEqual(typed.filter((c) => !expected.includes(c)), [], 'codes in index.d.ts the addon does not have');
  assert.deepEqual([...CODES].sort(), [...expected].sort(), 'lib/errors.js knows the same codes');
});

test('every error code the JavaScript source names is a known one', () => {
  const files = ['index.js', 'bin/espial.js', ...fs.readdirSync(path.join(ROOT, 'lib')).map((f) => `lib/${f}`)];
  const named = new Set();
  for (const file of files) {
    for (const [, code] of read(file).matchAll(/'(ERR_[A-Z_]+)'/g)) named.add(code);
  }
  assert.ok(named.has('ERR_ESPIAL_NOT_ELIGIBLE'), 'the scan finds the codes');
  // lib/load.js's codes are Node's, for an addon that cannot be loaded: before errorCodes().
  assert.deepEqual([...named].filter((code) => !CODES.includes(code) && !LOAD_CODES.includes(code)), []);
});

test('espialError sets the code and the class, and refuses a code espial does not have', () => {
  const err = espialError('ERR_ESPIAL_NOT_RUNNING', 'espial: send(): the node is not running');
  assert.ok(err instanceof Error && !(err instanceof TypeError));
  assert.equal(err.code, 'ERR_ESPIAL_NOT_RUNNING');
  assert.equal(err.message, 'espial: send(): the node is not running');
  assert.ok(espialError('ERR_INVALID_ARG_TYPE', 'espial: x', TypeError) instanceof TypeError);
  assert.throws(() => espialError('ERR_ESPIAL_NO_SUCH_CODE', 'espial: x'), /unknown error code ERR_ESPIAL_NO_SUCH_CODE/);
  assert.throws(() => espialError(undefined, 'espial: x'), /unknown error code/);
});

test("a send after exit() is refused in the addon's words, the same the exit path uses", async () => {
  const espial = require('..');
  // Never started (exit() before the start tick), so no socket is opened.
  const node = espial({ network: { port: 1, address: { local: '127.0.0.1' }, multicast: false } });
  await node.exit();
  // lib/send-queue.js fails a batch left waiting at exit with these words; they must be the
  // addon's own (src/binding/errors.rs).
  await assert.rejects(node.send('job', 1), {
    code: 'ERR_ESPIAL_NOT_RUNNING',
    message: 'espial: send(): the node is not running',
  });
});
