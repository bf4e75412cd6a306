'use strict';

// The linker and sysroot that `npm run build` links a linux gnu addon with, so that the addon
// needs glibc 2.17 (CentOS/RHEL 7 and everything since) instead of the glibc of the machine
// that built it. It is napi-rs's own cross toolchain (crosstool-NG: GCC 4.8.5, binutils 2.36,
// a glibc 2.17 sysroot), the one napi-rs's and @node-rs's prebuilt addons are linked with,
// from its npm package: `npm install` brings it as an optional dependency of this private
// workspace, so npm leaves it out on a host it cannot run on instead of failing, and the
// published `espial` does not carry it. rustc still compiles everything with the same
// profile; only the link (crt files, libc stubs, their symbol versions) changes.
//
// napi's own `napi build --use-napi-cross` is not used because it fetches the toolchain with
// `npm pack` at build time (the tests here run with no network), asks for the toolchain at
// @napi-rs/cross-toolchain's own version (1.0.5, never published for x86_64), and unpacks it
// with @napi-rs/lzma, which needs Node 22. Here the archive comes from node_modules, locked
// in package-lock.json, and `tar -xJf` unpacks it once into node_modules/.cache.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

// The oldest glibc a linux gnu addon built with these toolchains needs: the loader states it
// in its errors, so it lives with the loader.
const { GLIBC_FLOOR } = require('../../lib/load.js');

const ROOT = path.resolve(__dirname, '..', '..');
const CACHE = path.join(ROOT, 'node_modules', '.cache', 'espial-toolchain');

// Rust target → the package with a toolchain for it that runs on a host of `hostArch`, and
// the name it is installed under. The name is an npm alias because @napi-rs/cli's own
// @napi-rs/cross-toolchain wants these packages at ^1.0.5 as optional peers and npm would
// otherwise leave 1.0.0 out. The aarch64 one is not a dependency (another 50 MB for every
// `npm install`): the release workflow installs it where it cross-builds linux-arm64-gnu.
const TOOLCHAINS = {
  'x86_64-unknown-linux-gnu': { hostArch: 'x64', name: 'glibc-toolchain-x86_64', package: '@napi-rs/cross-toolchain-x64-target-x86_64' },
  'aarch64-unknown-linux-gnu': { hostArch: 'x64', name: 'glibc-toolchain-aarch64', package: '@napi-rs/cross-toolchain-x64-target-aarch64' },
};

class ToolchainError extends Error {}

/** Whether a build for `triple` is linked against the glibc 2.17 sysroot. */
function isGlibcTarget(triple) {
  return /-linux-gnu/.test(triple);
}

/** The archive of the toolchain for `triple` on this host, or a ToolchainError saying why not. */
function locate(triple) {
  const known = TOOLCHAINS[triple];
  if (!known) throw new ToolchainError(`no glibc ${GLIBC_FLOOR} toolchain is known for ${triple}`);
  if (process.platform !== 'linux' || process.arch !== known.hostArch) {
    throw new ToolchainError(`the glibc ${GLIBC_FLOOR} toolchain for ${triple} runs on linux-${known.hostArch} hosts only (this is ${process.platform}-${process.arch})`);
  }
  let manifest;
  try {
    manifest = require.resolve(`${known.name}/package.json`, { paths: [__dirname] });
  } catch {
    throw new ToolchainError(
      `${known.package} is not installed as ${known.name}: run \`npm install\` (an optional dependency of ` +
        `scripts/toolchain; npm leaves it out with --omit=optional, or on another host)`,
    );
  }
  const { version } = JSON.parse(fs.readFileSync(manifest, 'utf8'));
  const archive = path.join(path.dirname(manifest), `${triple}.tar.xz`);
  if (!fs.existsSync(archive)) throw new ToolchainError(`${known.package}@${version} holds no ${triple}.tar.xz`);
  return { package: known.package, version, archive };
}

/**
 * The toolchain for `triple`, unpacked into node_modules/.cache on first use (a few seconds;
 * 220 MB), as paths: { root, linker, ar, sysroot, package, version }.
 * @throws {ToolchainError} when there is none for this host and target, or it cannot be unpacked
 */
function toolchain(triple) {
  const found = locate(triple);
  const root = path.join(CACHE, `${triple}-${found.version}`);
  const complete = path.join(root, '.espial-unpacked');
  if (!fs.existsSync(complete)) {
    // Unpacked beside its final place and renamed, so that an interrupted or concurrent
    // unpack never leaves a half toolchain where a build would use it.
    fs.mkdirSync(CACHE, { recursive: true });
    // What an unpack killed midway left (200 MB each); one still running is minutes younger.
    for (const name of fs.readdirSync(CACHE).filter((n) => n.includes('-partial-'))) {
      const stale = path.join(CACHE, name);
      if (Date.now() - fs.statSync(stale).mtimeMs > 10 * 60_000) fs.rmSync(stale, { recursive: true, force: true });
    }
    const partial = fs.mkdtempSync(path.join(CACHE, `${triple}-partial-`));
    try {
      const tar = spawnSync('tar', ['-xJf', found.archive, '-C', partial], { encoding: 'utf8' });
      if (tar.error || tar.status !== 0) {
        throw new ToolchainError(`cannot unpack ${found.archive} (needs tar and xz): ${tar.error ? tar.error.message : tar.stderr.trim()}`);
      }
      fs.writeFileSync(path.join(partial, '.espial-unpacked'), `${found.package}@${found.version}\n`);
      fs.rmSync(root, { recursive: true, force: true });
      try {
        fs.renameSync(partial, root);
      } catch (err) {
        if (!fs.existsSync(complete)) throw err; // else another build unpacked it first
      }
    } finally {
      fs.rmSync(partial, { recursive: true, force: true });
    }
  }
  const tool = (name) => path.join(root, 'bin', `${triple}-${name}`);
  const paths = { root, linker: tool('gcc'), ar: tool('ar'), sysroot: path.join(root, triple, 'sysroot'), package: found.package, version: found.version };
  if (!fs.existsSync(paths.linker)) throw new ToolchainError(`${found.package}@${found.version} has no ${path.basename(paths.linker)}`);
  return paths;
}

/**
 * The environment that makes cargo link `triple` with the toolchain: its gcc as the linker,
 * and as the C compiler and archiver for any C code a dependency builds with the cc crate
 * (none does today), so that C code is built against the same glibc.
 */
function buildEnv(triple, paths) {
  const underscored = triple.replace(/-/g, '_');
  return {
    [`CARGO_TARGET_${underscored.toUpperCase()}_LINKER`]: paths.linker,
    [`CC_${underscored}`]: paths.linker,
    [`AR_${underscored}`]: paths.ar,
  };
}

module.exports = { GLIBC_FLOOR, TOOLCHAINS, ToolchainError, isGlibcTarget, toolchain, buildEnv };
