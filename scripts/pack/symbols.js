#!/usr/bin/env node
'use strict';

// Which glibc, libgcc and libstdc++ a linux gnu addon needs, read from the addon itself: the
// symbol versions its undefined dynamic symbols are bound to (what `objdump -T` shows) and
// the version needs the dynamic loader checks when it opens the file (`readelf -V`). The
// ELF is read here, in JavaScript, so that the check needs neither binutils nor a machine
// of the addon's architecture. A linux gnu addon passes when it needs nothing newer than
// the runtime of glibc 2.17 with GCC 4.8's libgcc_s and libstdc++ (CentOS/RHEL 7), the
// system its toolchain's sysroot is (scripts/toolchain), and links only system libraries.
//
// Usage: node scripts/pack/symbols.js FILE.node...   (exit 0 when every file passes)

const fs = require('node:fs');
const { GLIBC_FLOOR } = require('../../lib/load.js');

/** The newest version of each versioned runtime namespace a linux gnu addon may need. */
const LINUX_GNU_FLOOR = Object.freeze({
  GLIBC: GLIBC_FLOOR,
  GCC: '4.8.0', // libgcc_s.so.1 of GCC 4.8
  GLIBCXX: '3.4.19', // libstdc++.so.6.0.19, GCC 4.8
  CXXABI: '1.3.7',
});

/** The libraries a linux gnu addon may link: glibc's own, libgcc_s and libstdc++. */
const SYSTEM_LIBRARIES = Object.freeze([
  'libc.so.6',
  'libm.so.6',
  'libpthread.so.0',
  'libdl.so.2',
  'librt.so.1',
  'libutil.so.1',
  'ld-linux-x86-64.so.2',
  'ld-linux-aarch64.so.1',
  'libgcc_s.so.1',
  'libstdc++.so.6',
]);

const SHT_DYNAMIC = 6;
const SHT_DYNSYM = 11;
const SHT_GNU_VERNEED = 0x6ffffffe;
const SHT_GNU_VERSYM = 0x6fffffff;
const DT_NEEDED = 1;
const SHN_UNDEF = 0;
const STB_WEAK = 2;
const VER_FLG_WEAK = 2;

class ElfError extends Error {}

/**
 * The libraries an ELF shared object needs and the versioned symbols it needs from them.
 * @param {Buffer} elf a 64-bit little-endian ELF file (x86-64, aarch64)
 * @returns {{ needed: string[], symbols: { symbol: string | null, version: string, library: string, weak: boolean }[] }}
 *   one entry per undefined dynamic symbol bound to a version, plus one with `symbol: null`
 *   for a version need that no symbol names (the loader checks those too)
 */
function readDynamicSymbols(elf) {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new ElfError('not an ELF file');
  if (elf[4] !== 2 || elf[5] !== 1) throw new ElfError('not a 64-bit little-endian ELF file');
  const u64 = (offset) => Number(elf.readBigUInt64LE(offset));
  const shoff = u64(0x28);
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  if (shoff === 0 || shnum === 0 || shoff + shnum * shentsize > elf.length) throw new ElfError('no section headers');
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * shentsize;
    sections.push({ type: elf.readUInt32LE(at + 4), offset: u64(at + 24), size: u64(at + 32), link: elf.readUInt32LE(at + 40), info: elf.readUInt32LE(at + 44), entsize: u64(at + 56) });
  }
  const byType = (type) => sections.find((s) => s.type === type);
  const string = (table, offset) => {
    const start = table.offset + offset;
    const end = elf.indexOf(0, start);
    if (start >= table.offset + table.size || end < 0) throw new ElfError('string outside its table');
    return elf.toString('latin1', start, end);
  };

  const needed = [];
  const dynamic = byType(SHT_DYNAMIC);
  if (dynamic) {
    const strtab = sections[dynamic.link];
    for (let at = dynamic.offset; at + 16 <= dynamic.offset + dynamic.size; at += 16) {
      const tag = u64(at);
      if (tag === 0) break;
      if (tag === DT_NEEDED) needed.push(string(strtab, u64(at + 8)));
    }
  }

  // Version index (the `vna_other` a versym entry holds) → the version and its library.
  const versions = new Map();
  const verneed = byType(SHT_GNU_VERNEED);
  if (verneed) {
    const strtab = sections[verneed.link];
    let at = verneed.offset;
    for (let n = 0; n < verneed.info; n++) {
      const library = string(strtab, elf.readUInt32LE(at + 4));
      let aux = at + elf.readUInt32LE(at + 8);
      for (let k = elf.readUInt16LE(at + 2); k > 0; k--) {
        versions.set(elf.readUInt16LE(aux + 6), {
          version: string(strtab, elf.readUInt32LE(aux + 8)),
          library,
          weak: (elf.readUInt16LE(aux + 4) & VER_FLG_WEAK) !== 0,
          used: false,
        });
        const next = elf.readUInt32LE(aux + 12);
        if (next === 0) break;
        aux += next;
      }
      const next = elf.readUInt32LE(at + 12);
      if (next === 0) break;
      at += next;
    }
  }

  const symbols = [];
  const dynsym = byType(SHT_DYNSYM);
  const versym = byType(SHT_GNU_VERSYM);
  if (dynsym && versym) {
    const strtab = sections[dynsym.link];
    const count = dynsym.size / (dynsym.entsize || 24);
    for (let i = 1; i < count; i++) {
      const at = dynsym.offset + i * 24;
      if (elf.readUInt16LE(at + 6) !== SHN_UNDEF) continue;
      const need = versions.get(elf.readUInt16LE(versym.offset + i * 2) & 0x7fff);
      if (!need) continue; // unversioned (napi_* from node itself) or local
      need.used = true;
      symbols.push({ symbol: string(strtab, elf.readUInt32LE(at)), version: need.version, library: need.library, weak: elf[at + 4] >> 4 === STB_WEAK });
    }
  }
  for (const need of versions.values()) {
    if (!need.used) symbols.push({ symbol: null, version: need.version, library: need.library, weak: need.weak });
  }
  return { needed, symbols };
}

/**
 * The undefined versioned symbols in `objdump -T` output, in readDynamicSymbols's shape
 * (without the library, which objdump does not print).
 * @param {string} text
 */
function parseObjdump(text) {
  const symbols = [];
  for (const line of text.split('\n')) {
    const m = /^[0-9a-f]+ (.{7}) \*UND\*\s+[0-9a-f]+\s+\(?([A-Za-z_]+[A-Za-z0-9_.]*)\)?\s+(\S+)$/.exec(line);
    if (m) symbols.push({ symbol: m[3], version: m[2], library: undefined, weak: m[1].includes('w') });
  }
  return symbols;
}

/** -1, 0 or 1 as dotted version a is older than, the same as or newer than b. */
function compareVersions(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/**
 * Whether an addon with these symbol versions (and, when given, these needed libraries)
 * loads on the floor's systems. Every version need counts, weak ones too: a weak symbol's
 * version still has to exist unless the linker marked the need weak, and a need for a
 * version the floor lacks means the build was not linked against the floor's sysroot.
 * @param {{ symbol: string | null, version: string, library?: string }[]} symbols
 * @param {{ needed?: string[], floor?: Record<string, string>, libraries?: readonly string[] }} [options]
 * @returns {{ ok: boolean, problems: string[], newest: Record<string, string> }} newest: the
 *   newest version needed in each namespace (GLIBC, GCC, …)
 */
function checkSymbolVersions(symbols, { needed = [], floor = LINUX_GNU_FLOOR, libraries = SYSTEM_LIBRARIES } = {}) {
  const problems = [];
  const newest = {};
  const tooNew = new Map(); // version → symbols that need it
  for (const { symbol, version, library } of symbols) {
    const m = /^([A-Z]+)_(\d+(?:\.\d+)*)$/.exec(version);
    const from = library ? ` from ${library}` : '';
    if (!m || !(m[1] in floor)) {
      problems.push(`${symbol ?? '(a version need)'} needs ${version}${from}, which no system at the floor is known to have`);
      continue;
    }
    const [, namespace, number] = m;
    if (!newest[namespace] || compareVersions(number, newest[namespace]) > 0) newest[namespace] = number;
    if (compareVersions(number, floor[namespace]) > 0) {
      if (!tooNew.has(version)) tooNew.set(version, []);
      tooNew.get(version).push(symbol ?? '(a version need)');
    }
  }
  const byNewest = [...tooNew].sort(([a], [b]) => compareVersions(b.slice(b.indexOf('_') + 1), a.slice(a.indexOf('_') + 1)));
  for (const [version, names] of byNewest) {
    const namespace = version.slice(0, version.indexOf('_'));
    problems.push(`needs ${version}, newer than ${namespace}_${floor[namespace]}: ${names.join(', ')}`);
  }
  for (const library of needed) {
    if (!libraries.includes(library)) problems.push(`links ${library}, which is not a system library every glibc ${floor.GLIBC} system has`);
  }
  return { ok: problems.length === 0, problems, newest };
}

/** checkSymbolVersions on the addon at `file`. */
function checkAddon(file) {
  const { needed, symbols } = readDynamicSymbols(fs.readFileSync(file));
  return checkSymbolVersions(symbols, { needed });
}

/** One line that says what the floor is. */
function describeFloor(floor = LINUX_GNU_FLOOR) {
  return Object.entries(floor).map(([namespace, version]) => `${namespace}_${version}`).join(', ');
}

function main(files) {
  if (files.length === 0) {
    console.error('usage: node scripts/pack/symbols.js FILE.node...');
    return 2;
  }
  let failed = false;
  for (const file of files) {
    const result = checkAddon(file);
    const newest = Object.entries(result.newest).map(([ns, v]) => `${ns}_${v}`).join(', ');
    if (result.ok) console.log(`symbols: ${file}: needs at most ${newest} (floor ${describeFloor()})`);
    else {
      failed = true;
      console.error(`symbols: ${file}: FAILED, floor ${describeFloor()}:\n  ${result.problems.join('\n  ')}`);
    }
  }
  return failed ? 1 : 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));

module.exports = { LINUX_GNU_FLOOR, SYSTEM_LIBRARIES, ElfError, readDynamicSymbols, parseObjdump, checkSymbolVersions, checkAddon, describeFloor, compareVersions };
