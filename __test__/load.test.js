'use strict';

// espial installed without the addon for this platform (its platform package left out by
// npm, no local build), or with one the dynamic loader refuses (built for a newer glibc than
// the system has): requiring it says which package is missing or refused, what it requires,
// and how to install or build it, in the error's first line, instead of napi's generic
// "npm has a bug related to optional dependencies". Simulated with a copy of the package's
// JavaScript in a directory with no .node file and no node_modules, and for the refusal
// with the built addon patched to need GLIBC_2.99, which no glibc has (a real dlopen error).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');
const PLATFORM = 'linux-x64-gnu';
const ADDON = path.join(ROOT, `espial.${PLATFORM}.node`);
const BUILT = process.platform === 'linux' && process.arch === 'x64' && fs.existsSync(ADDON);

function withoutAddon(body) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'espial-no-addon-'));
  try {
    for (const file of ['index.js', 'package.json', 'binding.js']) fs.copyFileSync(path.join(ROOT, file), path.join(dir, file));
    for (const sub of ['lib', 'bin']) fs.cpSync(path.join(ROOT, sub), path.join(dir, sub), { recursive: true });
    return body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const run = (args) => spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 10_000 });

test('a missing platform package names the package, the platform and how to install or build it', () => {
  withoutAddon((dir) => {
    const probe = `try { require(${JSON.stringify(dir)}) } catch (e) { console.log(JSON.stringify({ message: e.message, code: e.code, pkg: e.package, platform: e.platform, cause: Boolean(e.cause) })) }`;
    const result = run(['-e', probe]);
    assert.equal(result.status, 0, result.stderr);
    const err = JSON.parse(result.stdout);
    const platform = `${process.platform}-${process.arch}`;
    assert.equal(err.code, 'MODULE_NOT_FOUND');
    assert.ok(err.pkg.startsWith(`espial-${platform}`), err.pkg);
    assert.ok(err.platform.startsWith(platform), err.platform);
    assert.ok(err.message.includes(`"${err.pkg}"`), err.message);
    assert.ok(err.message.includes(`npm install ${err.pkg}`), err.message);
    assert.ok(err.message.includes('npm run build'), err.message);
    assert.ok(err.message.includes('Rust'), err.message);
    assert.doesNotMatch(err.message, /npm has a bug/);
    assert.ok(err.cause, "napi's own error is kept as the cause");
  });
});

test('the CLI without its addon says so in one line and exits 1', () => {
  withoutAddon((dir) => {
    const result = run([path.join(dir, 'bin', 'espial.js'), 'members', '--interface', '127.0.0.1', '--wait', '100']);
    assert.equal(result.status, 1, result.stderr);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0], /^espial: the native addon for this platform .* is missing/);
  });
});

// The built addon with one of its glibc version needs renamed to GLIBC_2.99 in its string
// table (the same length): this system's dynamic loader refuses it as it would refuse an
// addon built for a newer glibc.
function needingGlibc299() {
  const elf = fs.readFileSync(ADDON);
  const at = elf.indexOf(Buffer.from('\0GLIBC_2.16\0', 'latin1'));
  assert.ok(at > 0, 'the built addon needs GLIBC_2.16');
  const patched = Buffer.from(elf);
  patched.write('GLIBC_2.99', at + 1, 'latin1');
  return patched;
}

// The built addon with its NEEDED libgcc_s.so.1 renamed to a library no system has.
function needingMissingLibrary() {
  const elf = fs.readFileSync(ADDON);
  const at = elf.indexOf(Buffer.from('\0libgcc_s.so.1\0', 'latin1'));
  assert.ok(at > 0, 'the built addon needs libgcc_s.so.1');
  const patched = Buffer.from(elf);
  patched.write('libgcc_x.so.1', at + 1, 'latin1');
  return patched;
}

const probeRefusal = (dir) =>
  `try { require(${JSON.stringify(dir)}) } catch (e) { console.log(JSON.stringify({ message: e.message, code: e.code, pkg: e.package, platform: e.platform, file: e.file, requirement: e.requirement, glibc: e.glibc, cause: Boolean(e.cause) })) }`;

test('a platform package the dynamic loader refuses names the package, what it needs and how to build it', { skip: !BUILT && `espial.${PLATFORM}.node is not built` }, () => {
  withoutAddon((dir) => {
    const pkgDir = path.join(dir, 'node_modules', `espial-${PLATFORM}`);
    fs.mkdirSync(pkgDir, { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'npm', PLATFORM, 'package.json'), path.join(pkgDir, 'package.json'));
    fs.writeFileSync(path.join(pkgDir, `espial.${PLATFORM}.node`), needingGlibc299());
    const result = run(['-e', probeRefusal(dir)]);
    assert.equal(result.status, 0, result.stderr);
    const err = JSON.parse(result.stdout);
    assert.equal(err.code, 'ERR_DLOPEN_FAILED');
    assert.equal(err.pkg, `espial-${PLATFORM}`);
    assert.equal(err.platform, PLATFORM);
    assert.equal(err.requirement, 'GLIBC_2.99');
    assert.match(err.glibc, /^2\.\d+$/);
    assert.ok(err.file.endsWith(path.join('node_modules', `espial-${PLATFORM}`, `espial.${PLATFORM}.node`)), err.file);
    const first = err.message.split('\n')[0];
    assert.match(first, new RegExp(`^espial: the native addon from the package "espial-${PLATFORM}" cannot be loaded on this system`));
    assert.ok(first.includes(`it needs GLIBC_2.99, and this system has glibc ${err.glibc}`), first);
    assert.ok(first.includes(`espial-${PLATFORM} is built for glibc 2.17 or newer`), first);
    assert.ok(first.includes('npm run build'), first);
    assert.ok(first.includes('Rust'), first);
    assert.doesNotMatch(first, /npm has a bug/);
    assert.ok(err.cause, "napi's own error is kept as the cause");
  });
});

test('a local build the dynamic loader refuses names the file and what it needs; the CLI says so in one line', { skip: !BUILT && `espial.${PLATFORM}.node is not built` }, () => {
  withoutAddon((dir) => {
    fs.writeFileSync(path.join(dir, `espial.${PLATFORM}.node`), needingGlibc299());
    const result = run(['-e', probeRefusal(dir)]);
    assert.equal(result.status, 0, result.stderr);
    const err = JSON.parse(result.stdout);
    assert.equal(err.code, 'ERR_DLOPEN_FAILED');
    assert.equal(err.pkg, undefined);
    assert.equal(err.platform, PLATFORM);
    assert.equal(err.requirement, 'GLIBC_2.99');
    assert.equal(fs.realpathSync(err.file), fs.realpathSync(path.join(dir, `espial.${PLATFORM}.node`)));
    assert.ok(err.message.includes(`the local build ${err.file} cannot be loaded`), err.message);
    assert.ok(err.message.includes('it needs GLIBC_2.99'), err.message);

    const cli = run([path.join(dir, 'bin', 'espial.js'), 'members', '--interface', '127.0.0.1', '--wait', '100']);
    assert.equal(cli.status, 1, cli.stderr);
    const lines = cli.stderr.trim().split('\n');
    assert.equal(lines.length, 1, cli.stderr);
    assert.match(lines[0], /^espial: the native addon from the local build .* cannot be loaded .*it needs GLIBC_2\.99/);
  });
});

test('an addon whose library is missing says so, and that the addon is there', { skip: !BUILT && `espial.${PLATFORM}.node is not built` }, () => {
  withoutAddon((dir) => {
    const pkgDir = path.join(dir, 'node_modules', `espial-${PLATFORM}`);
    fs.mkdirSync(pkgDir, { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'npm', PLATFORM, 'package.json'), path.join(pkgDir, 'package.json'));
    fs.writeFileSync(path.join(pkgDir, `espial.${PLATFORM}.node`), needingMissingLibrary());
    const result = run(['-e', probeRefusal(dir)]);
    assert.equal(result.status, 0, result.stderr);
    const err = JSON.parse(result.stdout);
    assert.equal(err.code, 'ERR_DLOPEN_FAILED');
    assert.equal(err.requirement, undefined);
    assert.match(err.message, /^espial: the native addon for linux-x64 cannot be loaded on this system .*the dynamic loader says: libgcc_x\.so\.1: cannot open shared object file/);
    assert.ok(err.message.includes('npm run build'), err.message);
    assert.doesNotMatch(err.message, /is missing: neither/);
  });
});
