'use strict';

// Compiles main.ts with the project's TypeScript into a temporary directory and runs it
// there, with `espial` resolving to this repository (in your project, `npm install espial`
// and compile as usual). Exits with the example's exit code.
//
//   node examples/typescript/run.js

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'espial-ts-example-'));
let code = 1;
try {
  // node_modules/espial -> this repository, so that the compiled require('espial') works.
  fs.mkdirSync(path.join(tmp, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(tmp, 'node_modules', 'espial'), 'dir');
  const out = path.join(tmp, 'out');
  const compile = spawnSync(process.execPath, [tsc, '-p', __dirname, '--outDir', out], {
    stdio: 'inherit',
    timeout: 60_000,
  });
  if (compile.status !== 0) {
    console.error(`tsc failed (${compile.status ?? compile.signal})`);
  } else {
    const run = spawnSync(process.execPath, [path.join(out, 'main.js')], { stdio: 'inherit', cwd: tmp, timeout: 30_000 });
    code = run.status ?? 1;
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exitCode = code;
