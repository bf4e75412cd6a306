'use strict';

// index.d.ts under the TypeScript compiler (strict): the TypeScript example compiles with
// `tsc --noEmit`, and __test__/types/usage.ts, whose `@ts-expect-error` lines must each be
// an error, pins the typed events, options and node objects.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');

const ROOT = path.join(__dirname, '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const TIMEOUT_MS = 60_000;

function tsc(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [TSC, ...args], { cwd: ROOT, timeout: TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal) : 0, output: stdout + stderr });
    });
  });
}

const haveTsc = fs.existsSync(TSC) && fs.existsSync(path.join(ROOT, 'node_modules', '@types', 'node'));
const skip = haveTsc ? false : 'typescript and @types/node are not installed (npm install)';

test('the TypeScript example compiles with tsc --noEmit (strict)', { skip, timeout: TIMEOUT_MS + 5000 }, async () => {
  const result = await tsc(['-p', 'examples/typescript', '--noEmit']);
  assert.equal(result.code, 0, result.output);
});

test('index.d.ts types every core event, option, method and node object', { skip, timeout: TIMEOUT_MS + 5000 }, async () => {
  const result = await tsc(['-p', '__test__/types']);
  assert.equal(result.code, 0, result.output);
});

test('a wrongly typed listener of a core event is a compile error', { skip, timeout: TIMEOUT_MS + 5000 }, async (t) => {
  // The @ts-expect-error lines prove this too; this makes the failure visible on its own.
  const dir = fs.mkdtempSync(path.join(__dirname, 'types', 'tmp-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(
    path.join(dir, 'bad.ts'),
    "import espial = require('espial');\nespial().on('added_node', (node: number) => node);\n",
  );
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({ extends: '../tsconfig.json', compilerOptions: { paths: { espial: ['../../../index.d.ts'] } }, files: ['bad.ts'] }),
  );
  const result = await tsc(['-p', path.relative(ROOT, dir)]);
  assert.notEqual(result.code, 0);
  assert.match(result.output, /bad\.ts\(2,/);
});
