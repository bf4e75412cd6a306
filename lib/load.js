'use strict';

// Loads the native addon through napi's generated binding.js. When no addon fits this
// platform, binding.js throws a generic "npm has a bug related to optional dependencies"
// with the real cause several `cause`s deep; this says instead which package is missing,
// for which platform, and how to install or build it.

const path = require('node:path');

const BINDING = path.join(__dirname, '..', 'binding.js');

/** The oldest glibc the linux gnu addons need: they are linked against it (scripts/toolchain). */
const GLIBC_FLOOR = '2.17';

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
    `then remove node_modules and package-lock.json and run \`npm install\` again), or build it from ` +
    `source in espial's directory with a Rust toolchain (https://rustup.rs): \`npm run build\`.`;
  const missing = new Error(message, { cause: err });
  // Node's own code for a module that cannot be found.
  missing.code = 'MODULE_NOT_FOUND';
  missing.package = pkg;
  missing.platform = platform;
  return missing;
}

/** binding.js's exports, or an error that says what is missing and what to do. */
function loadBinding() {
  try {
    return require(BINDING);
  } catch (err) {
    if (/Cannot find native binding/.test(String(err && err.message))) throw missingAddon(err);
    throw err;
  }
}

module.exports = { loadBinding, GLIBC_FLOOR };
