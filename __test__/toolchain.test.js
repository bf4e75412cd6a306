'use strict';

// The toolchain `npm run build` links linux gnu addons with (scripts/toolchain): installed by
// `npm install`, unpacked into node_modules/.cache, and really the glibc 2.17 one; and the
// environment that hands it to cargo. The unpacking test runs on linux-x64 only, where the
// toolchain is a dependency.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { toolchain, buildEnv, isGlibcTarget, ToolchainError } = require('../scripts/toolchain');

const LINUX_X64 = process.platform === 'linux' && process.arch === 'x64';

test('only linux gnu targets are linked against glibc 2.17', () => {
  assert.equal(isGlibcTarget('x86_64-unknown-linux-gnu'), true);
  assert.equal(isGlibcTarget('aarch64-unknown-linux-gnu'), true);
  assert.equal(isGlibcTarget('x86_64-unknown-linux-musl'), false);
  assert.equal(isGlibcTarget('aarch64-apple-darwin'), false);
  assert.equal(isGlibcTarget('x86_64-pc-windows-msvc'), false);
});

test('cargo gets the toolchain as linker, C compiler and archiver of that target only', () => {
  const env = buildEnv('x86_64-unknown-linux-gnu', { linker: '/t/bin/x86_64-unknown-linux-gnu-gcc', ar: '/t/bin/x86_64-unknown-linux-gnu-ar' });
  assert.deepEqual(env, {
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER: '/t/bin/x86_64-unknown-linux-gnu-gcc',
    CC_x86_64_unknown_linux_gnu: '/t/bin/x86_64-unknown-linux-gnu-gcc',
    AR_x86_64_unknown_linux_gnu: '/t/bin/x86_64-unknown-linux-gnu-ar',
  });
});

test('a target with no known glibc 2.17 toolchain is refused with the reason', () => {
  assert.throws(() => toolchain('riscv64gc-unknown-linux-gnu'), (err) => err instanceof ToolchainError && /no glibc 2\.17 toolchain is known for riscv64gc/.test(err.message));
});

test('npm install brought the x86_64 toolchain, and it links against glibc 2.17', { skip: !LINUX_X64 && 'the toolchain runs on linux-x64 hosts' }, () => {
  const paths = toolchain('x86_64-unknown-linux-gnu');
  assert.ok(paths.root.includes(path.join('node_modules', '.cache', 'espial-toolchain')), paths.root);
  const version = spawnSync(paths.linker, ['--version'], { encoding: 'utf8' });
  assert.equal(version.status, 0, version.stderr);
  assert.match(version.stdout, /4\.8\.5/);
  // The sysroot is glibc 2.17's: its libc is libc-2.17.so, and it defines no newer version.
  const lib64 = path.join(paths.sysroot, 'lib64');
  assert.ok(fs.existsSync(path.join(lib64, 'libc-2.17.so')), `no libc-2.17.so in ${lib64}`);
  assert.equal(fs.readdirSync(lib64).filter((f) => /^libc-2\.\d+\.so$/.test(f)).join(), 'libc-2.17.so');
  // A second call finds it unpacked (no second tar run).
  const mtime = fs.statSync(path.join(paths.root, '.espial-unpacked')).mtimeMs;
  assert.equal(toolchain('x86_64-unknown-linux-gnu').root, paths.root);
  assert.equal(fs.statSync(path.join(paths.root, '.espial-unpacked')).mtimeMs, mtime);
});
