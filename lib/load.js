'use strict';

// Loads the native addon through napi's generated binding.js. When no addon fits this
// platform, or the one there cannot be loaded (built for another libc, or for a newer glibc
// than this system has), binding.js throws a generic "npm has a bug related to optional
// dependencies" with the real cause several `cause`s deep; this says instead which package
// is missing or cannot be loaded, what it requires, and how to install or build it.

const path = require('node:path');

const BINDING = path.join(__dirname, '..', 'binding.js');

/**
 * The codes of the errors thrown here: Node's own, for an addon that is missing or that the
 * dynamic loader refused. They are not in lib/errors.js's CODES, which come from the addon.
 */
const LOAD_CODES = Object.freeze(['MODULE_NOT_FOUND', 'ERR_DLOPEN_FAILED']);

/** The oldest glibc the linux gnu addons need: they are linked against it (scripts/toolchain). */
const GLIBC_FLOOR = '2.17';

const BUILD_FROM_SOURCE =
  "build it from source in espial's directory with a Rust toolchain (https://rustup.rs): " +
  '`npm install && npm run build`';

/** This system's glibc version (e.g. `2.28`), or null where there is none (musl, not Linux). */
function runtimeGlibc() {
  if (process.platform !== 'linux' || !process.report || typeof process.report.getReport !== 'function') return null;
  try {
    return process.report.getReport().header.glibcVersionRuntime || null;
  } catch {
    return null;
  }
}

/** The platform package binding.js looked for, e.g. `espial-linux-x64-gnu`, from its error. */
function wantedPackage(err) {
  for (let e = err; e; e = e.cause) {
    const m = /Cannot find module '(espial-[a-z0-9-]+)'/.exec(String(e.message));
    if (m && !m[1].includes('wasm32')) return m[1];
  }
  return undefined;
}

function missingAddon(err) {
  const pkg = wantedPackage(err);
  const platform = pkg ? pkg.slice('espial-'.length) : `${process.platform}-${process.arch}`;
  const what = pkg ? `the package "${pkg}"` : `a package for ${platform}`;
  const message =
    `espial: the native addon for this platform (${platform}, Node.js ${process.version}) is missing: ` +
    `neither ${what} nor a local build (espial.${platform}.node next to binding.js) was found. ` +
    `Install it with \`npm install ${pkg ?? 'espial'}\` (npm leaves a platform package out when ` +
    `optional dependencies are omitted, or when package-lock.json was made on another platform: ` +
    `then remove node_modules and package-lock.json and run \`npm install\` again), or ${BUILD_FROM_SOURCE}.`;
  const missing = new Error(message, { cause: err });
  // Node's own code for a module that cannot be found.
  missing.code = 'MODULE_NOT_FOUND';
  missing.package = pkg;
  missing.platform = platform;
  return missing;
}

/**
 * The first addon binding.js found but could not load, from its error: the dynamic loader's
 * message (dlopen's, as Node reports it) names the .node file.
 * @returns {{ file: string, message: string } | undefined}
 */
function unloadableAddon(err) {
  for (let e = err; e; e = e.cause) {
    const message = String(e.message);
    const m = /\((?:required|needed) by ([^()]+\.node)\)/.exec(message) || /^([^:]+\.node): /.exec(message);
    if (m) return { file: m[1], message };
    // A library the addon needs is not there at all (e.g. libgcc_s.so.1): dlerror names
    // only that library, not the addon.
    if (/cannot open shared object file|Error loading shared library/.test(message)) return { file: undefined, message };
  }
  return undefined;
}

/**
 * What an addon that the dynamic loader refused needs and this system lacks, in words.
 * `pkg` is the platform package it came from, undefined for a local build (which may have
 * been linked against any glibc: ESPIAL_HOST_GLIBC=1, or copied from another machine).
 */
function requirementOf(message, pkg, platform, glibc) {
  const version = /version [`']((GLIBC|GLIBCXX|CXXABI|GCC)_[0-9.]+)' not found/.exec(message);
  const gnu = /-gnu(eabihf)?$/.test(pkg ?? '');
  if (version) {
    const floor = gnu && version[2] === 'GLIBC' ? ` (${pkg} is built for glibc ${GLIBC_FLOOR} or newer)` : '';
    const have = glibc ? `this system has glibc ${glibc}` : 'this system has no glibc';
    return { requirement: version[1], words: `it needs ${version[1]}, and ${have}${floor}` };
  }
  if (/-gnu/.test(platform ?? '') && process.platform === 'linux' && !glibc) {
    return {
      requirement: `glibc ${GLIBC_FLOOR}`,
      words: `it is built for glibc ${GLIBC_FLOOR} or newer and this system has no glibc (musl?): use espial-${process.platform}-${process.arch}-musl`,
    };
  }
  return { requirement: undefined, words: `the dynamic loader says: ${message.split('\n')[0]}` };
}

function unloadable(err, { file, message }) {
  const pkg = file ? /node_modules[\\/]+(espial-[a-z0-9-]+)[\\/]/.exec(file)?.[1] : wantedPackage(err);
  const platform = pkg ? pkg.slice('espial-'.length) : /espial\.([a-z0-9-]+)\.node$/.exec(file ?? '')?.[1];
  const glibc = runtimeGlibc();
  const what = file && !pkg ? `from the local build ${file}` : pkg ? `from the package "${pkg}"` : `for ${process.platform}-${process.arch}`;
  const { requirement, words } = requirementOf(message, pkg, platform, glibc);
  const failed = new Error(
    `espial: the native addon ${what} cannot be loaded on this system ` +
      `(${process.platform}-${process.arch}, ${glibc ? `glibc ${glibc}` : 'no glibc'}, Node.js ${process.version}): ${words}. ` +
      `Use a system that meets it, or ${BUILD_FROM_SOURCE}, which links against glibc ${GLIBC_FLOOR} on linux ` +
      `(\`ESPIAL_HOST_GLIBC=1 npm run build\` against this system's own glibc instead).`,
    { cause: err },
  );
  // Node's own code for an addon that dlopen refused.
  failed.code = 'ERR_DLOPEN_FAILED';
  failed.package = pkg;
  failed.platform = platform;
  failed.file = file;
  failed.requirement = requirement;
  failed.glibc = glibc;
  return failed;
}

/** binding.js's exports, or an error that says what is missing or refused and what to do. */
function loadBinding() {
  try {
    return require(BINDING);
  } catch (err) {
    if (/Cannot find native binding/.test(String(err && err.message))) {
      const refused = unloadableAddon(err);
      throw refused ? unloadable(err, refused) : missingAddon(err);
    }
    throw err;
  }
}

module.exports = { loadBinding, GLIBC_FLOOR, LOAD_CODES };
