'use strict';

// The symbol-version check of `npm run pack:check` (scripts/pack/symbols.js): which glibc,
// libgcc and libstdc++ a linux gnu addon needs. The fixtures are `objdump -T` of two real
// builds of espial.linux-x64-gnu.node: the one linked against the builder's glibc 2.36
// (before issue 21; it needs GLIBC_2.34) and the one `npm run build` makes now, linked
// against glibc 2.17. The tests on the built addon are skipped where it is not built.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { readDynamicSymbols, parseObjdump, checkSymbolVersions, checkAddon, LINUX_GNU_FLOOR } = require('../scripts/pack/symbols.js');

const FIXTURES = path.join(__dirname, 'fixtures', 'symbols');
const fixture = (name) => parseObjdump(fs.readFileSync(path.join(FIXTURES, name), 'utf8'));
const ADDON = path.join(__dirname, '..', 'espial.linux-x64-gnu.node');
const built = () => process.platform === 'linux' && process.arch === 'x64' && fs.existsSync(ADDON);

test('the build linked against the builder\'s glibc fails: it needs GLIBC_2.34', () => {
  const symbols = fixture('glibc-2.34.objdump.txt');
  assert.ok(symbols.length > 50, `parsed ${symbols.length} symbols`);
  const result = checkSymbolVersions(symbols);
  assert.equal(result.ok, false);
  assert.equal(result.newest.GLIBC, '2.34');
  assert.match(result.problems[0], /^needs GLIBC_2\.34, newer than GLIBC_2\.17: .*pthread_create/);
  for (const version of ['2.18', '2.25', '2.28', '2.29', '2.30', '2.32', '2.33']) {
    assert.ok(result.problems.some((p) => p.startsWith(`needs GLIBC_${version},`)), `GLIBC_${version} reported`);
  }
  // A weak symbol counts too: __cxa_thread_atexit_impl is weak, and its version must exist.
  assert.ok(result.problems.some((p) => p.startsWith('needs GLIBC_2.18,') && p.includes('__cxa_thread_atexit_impl')));
});

test('the build linked against glibc 2.17 passes, and needs nothing newer', () => {
  const symbols = fixture('glibc-2.17.objdump.txt');
  assert.ok(symbols.length > 50, `parsed ${symbols.length} symbols`);
  const result = checkSymbolVersions(symbols);
  assert.deepEqual(result.problems, []);
  assert.equal(result.ok, true);
  assert.equal(result.newest.GLIBC, '2.16');
  assert.equal(result.newest.GCC, '4.2.0');
});

test('libgcc_s and libstdc++ newer than GCC 4.8\'s fail, as do unknown versions and libraries', () => {
  const ok = { symbol: 'memcpy', version: 'GLIBC_2.14', library: 'libc.so.6' };
  const cases = [
    [{ symbol: '_Unwind_Find_FDE', version: 'GCC_7.0.0', library: 'libgcc_s.so.1' }, /needs GCC_7\.0\.0, newer than GCC_4\.8\.0/],
    [{ symbol: '_ZSt28__throw_bad_array_new_lengthv', version: 'GLIBCXX_3.4.29', library: 'libstdc++.so.6' }, /needs GLIBCXX_3\.4\.29, newer than GLIBCXX_3\.4\.19/],
    [{ symbol: '__cxa_init_primary_exception', version: 'CXXABI_1.3.11', library: 'libstdc++.so.6' }, /needs CXXABI_1\.3\.11, newer than CXXABI_1\.3\.7/],
    [{ symbol: '_dl_x', version: 'GLIBC_PRIVATE', library: 'libc.so.6' }, /needs GLIBC_PRIVATE from libc\.so\.6, which no system/],
    [{ symbol: 'SSL_new', version: 'OPENSSL_3.0.0', library: 'libssl.so.3' }, /needs OPENSSL_3\.0\.0 from libssl\.so\.3/],
  ];
  for (const [symbol, expected] of cases) {
    const result = checkSymbolVersions([ok, symbol]);
    assert.equal(result.ok, false, symbol.version);
    assert.equal(result.problems.length, 1, result.problems.join('; '));
    assert.match(result.problems[0], expected);
  }
  const atTheFloor = [ok, { symbol: 'x', version: 'GLIBC_2.17' }, { symbol: 'y', version: 'GCC_4.8.0' }, { symbol: 'z', version: 'GLIBCXX_3.4.19' }];
  assert.deepEqual(checkSymbolVersions(atTheFloor, { needed: ['libc.so.6', 'libstdc++.so.6'] }).problems, []);
  const ssl = checkSymbolVersions([ok], { needed: ['libc.so.6', 'libssl.so.3'] });
  assert.deepEqual(ssl.problems, ['links libssl.so.3, which is not a system library every glibc 2.17 system has']);
  assert.equal(LINUX_GNU_FLOOR.GLIBC, '2.17');
});

test('the built addon needs nothing newer than the floor', { skip: !built() && 'espial.linux-x64-gnu.node is not built' }, () => {
  const result = checkAddon(ADDON);
  assert.deepEqual(result.problems, []);
  assert.ok(result.newest.GLIBC, 'the addon needs some glibc version');
});

test('the ELF reader sees what objdump -T sees in the built addon', { skip: !built() && 'espial.linux-x64-gnu.node is not built' }, (t) => {
  const objdump = spawnSync('objdump', ['-T', ADDON], { encoding: 'utf8' });
  if (objdump.error || objdump.status !== 0) {
    t.skip('objdump is not installed');
    return;
  }
  const key = ({ symbol, version, weak }) => `${symbol}@${version}${weak ? ' (weak)' : ''}`;
  const { needed, symbols } = readDynamicSymbols(fs.readFileSync(ADDON));
  assert.deepEqual(symbols.filter((s) => s.symbol).map(key).sort(), parseObjdump(objdump.stdout).map(key).sort());
  assert.ok(needed.includes('libc.so.6'), needed.join(', '));
  assert.ok(symbols.every((s) => needed.includes(s.library)), 'every version comes from a needed library');
});

test('a version need in the addon\'s own bytes is what the check reads', { skip: !built() && 'espial.linux-x64-gnu.node is not built' }, () => {
  // The built addon with one of its version needs renamed to GLIBC_2.34 in its string table
  // (same length): the reader must find it there, not only in objdump's text.
  const elf = fs.readFileSync(ADDON);
  const { symbols } = readDynamicSymbols(elf);
  const from = [...new Set(symbols.map((s) => s.version))].find((v) => /^GLIBC_2\.\d\d$/.test(v));
  assert.ok(from, 'the addon needs some GLIBC_2.xx');
  const at = elf.indexOf(Buffer.from(`\0${from}\0`, 'latin1'));
  assert.ok(at > 0);
  const patched = Buffer.from(elf);
  patched.write('GLIBC_2.34', at + 1, 'latin1');
  const result = checkSymbolVersions(readDynamicSymbols(patched).symbols);
  assert.equal(result.ok, false);
  assert.equal(result.newest.GLIBC, '2.34');
  assert.match(result.problems[0], /^needs GLIBC_2\.34, newer than GLIBC_2\.17/);
  assert.throws(() => readDynamicSymbols(Buffer.from('not an elf file at all, and long enough to have a header')), /not an ELF file/);
});
