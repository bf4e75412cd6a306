'use strict';

// espial installed without the addon for this platform (its platform package left out by
// npm, no local build): requiring it says which package is missing, for which platform,
// and how to install or build it, in the error's first line, instead of napi's generic
// "npm has a bug related to optional dependencies". Simulated with a copy of the package's
// JavaScript in a directory with no .node file and no node_modules.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');

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
