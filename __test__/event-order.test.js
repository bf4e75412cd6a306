'use strict';

// Trap 5 of issue 16: a departed master's removed_node comes before the new_master that
// replaces it, on every node. Measured with nodes in separate processes, as the issue did
// (3 of 6 runs of a graceful exit() were wrong before): the survivor that takes over sends
// its claim the moment it sees the master go, and that claim used to overtake the master's
// own goodbye (or crash) on the third node.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { performance } = require('node:perf_hooks');
const { randomPorts, uniqueCluster, loopbackOptions, withNodes, ids, delay } = require('./support.js');

const RUNS = 3; // of each way of leaving
const idOf = (child) => child.node.id;

// The master's id once all of `members` see each other and name the same master.
async function agreedMaster(members, ms = 10_000) {
  const deadline = performance.now() + ms;
  const all = members.map(idOf);
  for (;;) {
    for (const member of members) member.events.assertNoErrors();
    const states = await Promise.all(members.map((m) => m.request('master')));
    const masters = new Set(states.map((s) => s.master && s.master.id));
    const [master] = masters;
    const formed = states.every((s, i) => ids(s.nodes).join() === all.filter((id) => id !== all[i]).sort().join());
    if (formed && masters.size === 1 && all.includes(master)) return master;
    if (performance.now() > deadline) throw new Error(`no agreed master within ${ms} ms`);
    await delay(50);
  }
}

// On `member`, from the entry at `from` on: where removed_node(old) and new_master(not old) are.
function order(member, from, old) {
  const log = member.events.log.slice(from);
  const removed = log.findIndex((e) => e.event === 'removed_node' && e.arg?.id === old);
  const replaced = log.findIndex((e) => e.event === 'new_master' && e.arg?.id !== old);
  return { removed, replaced, log: log.map((e) => `${e.event}(${String(e.arg?.id ?? '').slice(0, 8)})`) };
}

async function departure(how, run) {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [multicastPort, ...ports] = randomPorts(4);
    const members = await Promise.all(
      ports.map((port, i) => scope.child(loopbackOptions({ port, multicastPort, cluster, master_election_timeout: 300 }), `${how}${run}-n${i}`)),
    );
    const old = await agreedMaster(members);
    const master = members.find((m) => idOf(m) === old);
    const survivors = members.filter((m) => m !== master);
    const marks = survivors.map((m) => m.events.log.length);
    if (how === 'exit') await master.request('exit');
    else await master.kill();
    const next = await agreedMaster(survivors);
    assert.notEqual(next, old);
    survivors.forEach((m, i) => {
      const { removed, replaced, log } = order(m, marks[i], old);
      assert.ok(removed >= 0, `${m.name}: no removed_node for the old master: ${log.join(' ')}`);
      assert.ok(replaced >= 0, `${m.name}: no new_master: ${log.join(' ')}`);
      assert.ok(removed < replaced, `${m.name} (${how}, run ${run}): new_master before the departed master's removed_node: ${log.join(' ')}`);
    });
  });
}

for (const how of ['exit', 'kill']) {
  test(`after the master's ${how === 'exit' ? 'exit()' : 'kill -9'}, every survivor emits its removed_node before the new_master (${RUNS} runs, separate processes)`, async () => {
    for (let run = 0; run < RUNS; run++) await departure(how, run);
  });
}
