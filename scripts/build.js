#!/usr/bin/env node
'use strict';

// `npm run build` and `npm run build:debug`: `napi build --platform --js binding.js --dts
// binding.d.ts` plus the arguments given (--release, --target <triple>, …), and for a linux
// gnu target, linked with the glibc 2.17 toolchain (scripts/toolchain) so that the addon
// loads on glibc 2.17 and newer. The release workflow builds every target through here too.
//
// Usage: node scripts/build.js [--release] [--target <triple>] [other napi build options]
// ESPIAL_HOST_GLIBC=1 links a linux gnu addon against this machine's glibc instead (for a
// host with no such toolchain, e.g. linux-arm64): that addon needs this machine's glibc or
// newer, and `npm run pack:check` refuses it.

const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { ToolchainError, isGlibcTarget, toolchain, buildEnv } = require('./toolchain');
const { GLIBC_FLOOR } = require('../lib/load.js');

const ROOT = path.resolve(__dirname, '..');

/** The Rust target a napi build with these arguments compiles for (napi's own rule). */
function targetOf(args) {
  const i = args.findIndex((a) => a === '--target' || a === '-t');
  if (i >= 0 && args[i + 1]) return args[i + 1];
  const inline = args.find((a) => a.startsWith('--target='));
  if (inline) return inline.slice('--target='.length);
  if (process.env.CARGO_BUILD_TARGET) return process.env.CARGO_BUILD_TARGET;
  const rustc = spawnSync(process.env.RUSTC || 'rustc', ['-vV'], { encoding: 'utf8' });
  const host = /^host: (\S+)$/m.exec(rustc.stdout || '');
  if (!host) throw new Error(`cannot tell the Rust host target (\`rustc -vV\`): ${rustc.error ? rustc.error.message : rustc.stderr}`);
  return host[1];
}

function main() {
  const args = process.argv.slice(2);
  const target = targetOf(args);
  const env = { ...process.env };
  if (isGlibcTarget(target) && process.env.ESPIAL_HOST_GLIBC !== '1') {
    try {
      const paths = toolchain(target);
      Object.assign(env, buildEnv(target, paths));
      console.error(`build: ${target} linked against glibc ${GLIBC_FLOOR} (${paths.package}@${paths.version})`);
    } catch (err) {
      if (!(err instanceof ToolchainError)) throw err;
      console.error(
        `build: cannot link ${target} against glibc ${GLIBC_FLOOR}: ${err.message}.\n` +
          'build: ESPIAL_HOST_GLIBC=1 links against this machine\'s glibc instead (the addon then needs it or newer).',
      );
      return 1;
    }
  } else if (isGlibcTarget(target)) {
    console.error(`build: ${target} linked against this machine's glibc (ESPIAL_HOST_GLIBC=1)`);
  }
  // The CLI beside the package's main module (dist/index.cjs): its exports hide dist/cli.js.
  const napi = path.join(path.dirname(require.resolve('@napi-rs/cli', { paths: [ROOT] })), 'cli.js');
  const result = spawnSync(
    process.execPath,
    [napi, 'build', '--platform', '--js', 'binding.js', '--dts', 'binding.d.ts', ...args],
    { cwd: ROOT, env, stdio: 'inherit' },
  );
  if (result.error) throw result.error;
  return result.status ?? 1;
}

process.exitCode = main();
