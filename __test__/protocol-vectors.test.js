'use strict';

// PROTOCOL.md's handshake test vectors, recomputed from the document's own description with
// node:crypto alone (no espial code): what a third party writing a node would do. The Rust
// test `vectors` (src/core/crypto/handshake.rs) checks the same bytes against the core.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const doc = fs.readFileSync(path.join(__dirname, '..', 'PROTOCOL.md'), 'utf8');
const vectors = doc.slice(doc.indexOf('## Test vectors'));

// The hex of the code block that follows `label` in the vectors section.
function block(label) {
  const at = vectors.indexOf(label);
  assert.ok(at >= 0, `PROTOCOL.md has no vector "${label}"`);
  const start = vectors.indexOf('```text\n', at) + 8;
  const end = vectors.indexOf('```', start);
  return Buffer.from(vectors.slice(start, end).replace(/\s+/g, ''), 'hex');
}

// The value on the line starting with `name` inside a code block.
function line(name) {
  const m = vectors.match(new RegExp(`^${name.replace(/[()]/g, '\\$&')}\\s+([0-9a-f-]+)$`, 'm'));
  assert.ok(m, `PROTOCOL.md has no line "${name}"`);
  return m[1];
}

const hex = (s) => Buffer.from(s, 'hex');
const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const sha256 = (...parts) => crypto.createHash('sha256').update(Buffer.concat(parts)).digest();
const hkdf = (ikm, salt, info) => Buffer.from(crypto.hkdfSync('sha256', ikm, salt, Buffer.from(info), 16));

function ecdh(privByte) {
  const e = crypto.createECDH('prime256v1');
  e.setPrivateKey(Buffer.alloc(32, privByte));
  return e;
}

function publicKeyObject(compressed) {
  const raw = crypto.ECDH.convertKey(compressed, 'prime256v1', undefined, undefined, 'uncompressed');
  const jwk = { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33).toString('base64url') };
  return crypto.createPublicKey({ key: jwk, format: 'jwk' });
}

function nodeId(compressed) {
  const id = sha256(Buffer.from('espial/2 node id'), compressed).subarray(0, 16);
  id[6] = 0x80 | (id[6] & 0x0f);
  id[8] = 0x80 | (id[8] & 0x3f);
  const h = id.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function hello(role, e, randomByte) {
  const cluster = Buffer.from('espial');
  return Buffer.concat([
    Buffer.from([1, 2, 1, role, cluster.length]),
    cluster,
    e.getPublicKey(),
    Buffer.alloc(32, randomByte),
  ]);
}

// Opens a record frame (length prefix included) under `key`; returns its plaintext.
function open(frame, key, seq) {
  assert.equal(frame.readUInt32BE(0), frame.length - 4);
  const body = frame.subarray(4);
  assert.equal(body[0], 2);
  assert.equal(body.readBigUInt64BE(1), BigInt(seq));
  const nonce = Buffer.concat([Buffer.alloc(4), body.subarray(1, 9)]);
  const d = crypto.createDecipheriv('aes-128-gcm', key, nonce);
  d.setAAD(body.subarray(0, 9));
  d.setAuthTag(body.subarray(body.length - 16));
  return Buffer.concat([d.update(body.subarray(9, body.length - 16)), d.final()]);
}

test("PROTOCOL.md's test vectors follow from its own description", () => {
  const eI = ecdh(0x11);
  const eR = ecdh(0x22);
  const helloI = hello(0, eI, 0xa1);
  const helloR = hello(1, eR, 0xb2);
  assert.equal(helloI.toString('hex'), block('hello_I').toString('hex'));
  assert.equal(helloR.toString('hex'), block('hello_R').toString('hex'));

  const dh = eI.computeSecret(eR.getPublicKey());
  assert.deepEqual(dh, eR.computeSecret(eI.getPublicKey()));
  assert.equal(dh.toString('hex'), block('dh = ECDH').toString('hex'));
  const th = sha256(Buffer.from('espial/2 transcript'), u32(helloI.length), helloI, u32(helloR.length), helloR);
  assert.equal(th.toString('hex'), block('th:').toString('hex'));

  const psk = Buffer.alloc(32, 0x5c);
  const ikm = Buffer.concat([dh, psk]);
  const keyI2R = hkdf(ikm, th, 'espial/2 key i2r');
  const keyR2I = hkdf(ikm, th, 'espial/2 key r2i');
  assert.equal(keyI2R.toString('hex'), line('key_i2r'));
  assert.equal(keyR2I.toString('hex'), line('key_r2i'));
  const open0 = Buffer.concat([dh, Buffer.alloc(32)]);
  assert.equal(hkdf(open0, th, 'espial/2 key i2r').toString('hex'), line('key_i2r (no cluster key)'));
  assert.equal(hkdf(open0, th, 'espial/2 key r2i').toString('hex'), line('key_r2i (no cluster key)'));

  for (const [who, privByte, keyOf, frameLabel, role] of [
    ['I', 0x33, keyI2R, 'confirm_I as sent', 'initiator'],
    ['R', 0x44, keyR2I, 'confirm_R as sent', 'responder'],
  ]) {
    const S = ecdh(privByte).getPublicKey(null, 'compressed');
    assert.equal(S.toString('hex'), line(`S_${who}`));
    assert.equal(nodeId(S), line(`id_${who}`));
    const plain = open(block(frameLabel), keyOf, 0);
    const label = Buffer.from('espial/2 finished');
    assert.deepEqual(plain.subarray(0, label.length), label);
    assert.deepEqual(plain.subarray(label.length, label.length + 33), S);
    const proof = plain.subarray(label.length + 33);
    assert.equal(proof.length, 64);
    assert.equal(proof.toString('hex'), block(`proof_${who} =`).toString('hex'));
    const signed = Buffer.concat([Buffer.from(`espial/2 ${role} proof`), th, S]);
    const key = publicKeyObject(S);
    assert.ok(crypto.verify('sha256', signed, { key, dsaEncoding: 'ieee-p1363' }, proof), `proof_${who} verifies`);
    const other = Buffer.concat([Buffer.from(`espial/2 ${role === 'initiator' ? 'responder' : 'initiator'} proof`), th, S]);
    assert.ok(!crypto.verify('sha256', other, { key, dsaEncoding: 'ieee-p1363' }, proof), 'bound to its role');
  }
});
