'use strict';

// Master election with real nodes on loopback: five nodes agreeing, failover after kill -9
// and exit(), promote(), nodes that are not eligible, a lone node, a joining node, a quorum,
// and two masters meeting when their partition heals. Nodes that must crash run in child
// processes; every wait is bounded.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { performance } = require('node:perf_hooks');
const {
  WAIT_MS,
  randomPorts,
  uniqueCluster,
  loopbackOptions,
  manualOptions,
  withNodes,
  byId,
  ids,
  delay,
  within,
} = require('./support.js');

const TIMEOUT = 300; // master_election_timeout where a test waits for a lone node's election

// A node's id, whether it runs here or in a child process.
const idOf = (member) => (member.node ? member.node.id : member.get_node_info().id);

// A node's own object, as it was when it started (no test here changes metadata).
const ownObject = (member) => (member.node ? member.node : member.get_node_info());

// What a node says about mastership, from one moment: get_master(), is_master(), get_nodes().
async function mastership(member) {
  // A child process's wrapper (it has `proc`; a node here has its own request() now).
  if (member.proc) return member.request('master');
  return { master: member.get_master(), is_master: member.is_master(), nodes: member.get_nodes() };
}

const smallest = (members) => members.map(idOf).sort()[0];

/**
 * Resolves with the master's id once every one of `members` sees all the others and no one
 * else, get_master() is the same node everywhere, one of them, and is_master() is true on it
 * alone. Polls; fails after `ms`, showing what each node said last.
 */
async function agreedMaster(members, what, ms = WAIT_MS) {
  const deadline = performance.now() + ms;
  const all = members.map(idOf);
  for (;;) {
    // A node that failed (a port in use, …) will never agree: say why at once.
    for (const member of members) member.events.assertNoErrors();
    const states = await Promise.all(members.map(mastership));
    const masterIds = new Set(states.map((s) => s.master && s.master.id));
    const [masterId] = masterIds;
    const agreed =
      masterIds.size === 1 &&
      all.includes(masterId) &&
      states.every((s, i) => ids(s.nodes).join() === all.filter((id) => id !== all[i]).sort().join()) &&
      states.every((s, i) => s.is_master === (all[i] === masterId));
    if (agreed) {
      const master = members[all.indexOf(masterId)];
      assert.deepEqual(states[all.indexOf(masterId)].master, ownObject(master), "the master's get_master() is its own object");
      return masterId;
    }
    if (performance.now() > deadline) {
      const said = states.map((s, i) => {
        const master = s.master ? s.master.id.slice(0, 8) : 'none';
        return `${members[i].name} (${all[i].slice(0, 8)}): master ${master}, is_master ${s.is_master}, sees ${s.nodes.length}`;
      });
      throw new Error(`timed out after ${ms} ms waiting for ${what}; ${said.join('; ')}`);
    }
    await delay(50);
  }
}

// On every node: new_master never names the same node twice in a row (once per change), and
// promotion and demotion alternate, starting with promotion. Only for histories without a
// spell of "no master", after which the same master may legitimately be announced again.
function assertCleanHistory(members) {
  for (const member of members) {
    const masters = member.events.seen('new_master').map((node) => node.id);
    for (let i = 1; i < masters.length; i++) {
      assert.notEqual(masters[i], masters[i - 1], `${member.name}: new_master twice in a row for ${masters[i]}`);
    }
    const changes = member.events.log.filter((e) => e.event === 'promotion' || e.event === 'demotion');
    changes.forEach((e, i) => {
      assert.equal(e.event, i % 2 === 0 ? 'promotion' : 'demotion', `${member.name}: ${e.event} #${i}`);
    });
  }
}

// Events of `member` after time `since`.
const after = (member, event, since, accept = () => true) =>
  member.events.log.filter((e) => e.event === event && e.at > since && accept(e.arg));

test('five nodes started together agree on one master; after kill -9 and exit() of the master the smallest eligible id takes over at once; promote() moves it', async (t) => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [multicastPort, ...ports] = randomPorts(6);
    // Default timers: the quick failovers below come from the crash or the goodbye itself.
    const members = await Promise.all(
      ports.map((port, i) => scope.child(loopbackOptions({ port, multicastPort, cluster }), `n${i}`)),
    );
    const first = await agreedMaster(members, 'the five nodes to agree on one master');
    t.diagnostic(`five nodes agreed on ${first.slice(0, 8)}`);
    for (const member of members) {
      const announced = member.events.seen('new_master').map((node) => node.id);
      assert.equal(announced.at(-1), first, `${member.name}'s last new_master names the master`);
    }

    // kill -9: no goodbye; the survivors see the crash and the smallest eligible id takes over.
    const crashed = members.find((m) => idOf(m) === first);
    const survivors = members.filter((m) => m !== crashed);
    const killedAt = await crashed.kill();
    const second = await agreedMaster(survivors, 'the four survivors of kill -9 to agree', 3000);
    assert.equal(second, smallest(survivors), 'the eligible survivor with the smallest id');
    const seenAt = await Promise.all(
      survivors.map(async (m) => {
        const announced = () => after(m, 'new_master', killedAt, byId(second))[0];
        await m.events.until(`${m.name}: new_master after the kill`, () => announced() !== undefined);
        return announced().at;
      }),
    );
    const crashMs = Math.max(...seenAt) - killedAt;
    t.diagnostic(`after kill -9 every survivor announced the new master within ${Math.round(crashMs)} ms`);
    assert.ok(crashMs < 3000, `new master announced ${Math.round(crashMs)} ms after kill -9; expected under 3000 ms`);
    for (const m of survivors) {
      assert.ok(m.events.first('removed_node', byId(first)), `${m.name} removed the crashed master`);
    }
    const promoted = survivors.find((m) => idOf(m) === second);
    assert.equal(after(promoted, 'promotion', killedAt).length, 1, 'one promotion on the new master');

    // exit(): the master says goodbye, and the next smallest id takes over.
    const leaving = promoted;
    const rest = survivors.filter((m) => m !== leaving);
    const exitAt = performance.now();
    const exited = leaving.request('exit');
    const third = await agreedMaster(rest, 'the three others to agree after the master exit()s', 2000);
    const exitMs = performance.now() - exitAt;
    t.diagnostic(`after the master's exit() the others agreed within ${Math.round(exitMs)} ms`);
    assert.equal(third, smallest(rest));
    await exited;
    for (const m of rest) {
      assert.equal(after(m, 'new_master', exitAt, byId(third)).length, 1, `${m.name}: one new_master for the successor`);
    }

    // promote() in another process: the largest id, which no failover would pick.
    const chosen = rest.filter((m) => idOf(m) !== third).sort((x, y) => (idOf(x) < idOf(y) ? 1 : -1))[0];
    const promotedAt = performance.now();
    assert.deepEqual(await chosen.request('promote'), { ok: true });
    assert.equal(await agreedMaster(rest, 'the others to follow the promoted node', 2000), idOf(chosen));
    const demoted = rest.find((m) => idOf(m) === third);
    const demotion = await demoted.events.next('demotion', `${demoted.name}: demotion`, byId(idOf(chosen)));
    assert.ok(demotion.at > promotedAt);
    assertCleanHistory(rest);
  });
});

test('promote() moves mastership: new_master everywhere, demotion on the old master, promotion on the new one', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [multicastPort, ...ports] = randomPorts(4);
    const members = ports.map((port, i) =>
      scope.node(loopbackOptions({ port, multicastPort, cluster, master_election_timeout: TIMEOUT }), `n${i}`),
    );
    const oldId = await agreedMaster(members, 'three nodes to agree');
    const old = members.find((m) => idOf(m) === oldId);
    const oldObject = old.get_node_info();

    // On the master itself, promote() changes nothing.
    const before = performance.now();
    old.promote();
    await delay(300);
    for (const m of members) assert.deepEqual(after(m, 'new_master', before), [], `${m.name}: no change`);

    const chosen = members.find((m) => m !== old);
    const chosenId = idOf(chosen);
    const promotedAt = performance.now();
    chosen.promote();
    await Promise.all(
      members.map((m) => m.events.next('new_master', `${m.name}: new_master for ${chosen.name}`, byId(chosenId))),
    );
    assert.equal(await agreedMaster(members, 'the three to agree on the promoted node', 2000), chosenId);
    const [demotion] = after(old, 'demotion', promotedAt);
    assert.ok(demotion, 'the old master emitted demotion');
    assert.deepEqual(demotion.arg, chosen.get_node_info(), 'demotion names the new master');
    const [promotion] = after(chosen, 'promotion', promotedAt);
    assert.ok(promotion, 'the promoted node emitted promotion');
    assert.deepEqual(promotion.arg, { previous_master: oldObject });
    for (const m of members) {
      assert.equal(after(m, 'new_master', promotedAt).length, 1, `${m.name}: one new_master`);
      assert.deepEqual(after(m, 'new_master', promotedAt)[0].arg, chosen.get_node_info());
      if (m !== old) assert.deepEqual(after(m, 'demotion', promotedAt), [], `${m.name}: no demotion`);
      if (m !== chosen) assert.deepEqual(after(m, 'promotion', promotedAt), [], `${m.name}: no promotion`);
    }
    // Stays so: nobody takes it back.
    await delay(500);
    assert.equal(await agreedMaster(members, 'the promoted node to stay master', 1000), chosenId);
    assertCleanHistory(members);
  });
});

test('master_eligible: false nodes never become master; without an eligible node nobody is master', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portE, portX, portY, portF] = randomPorts(4);
    const timers = { master_election_timeout: TIMEOUT };
    const eligible = scope.node(manualOptions({ port: portE, cluster, ...timers }), 'eligible');
    const seed = [`127.0.0.1:${portE}`];
    const x = scope.node(manualOptions({ port: portX, cluster, peers: seed, master_eligible: false, ...timers }), 'x');
    const y = scope.node(manualOptions({ port: portY, cluster, peers: seed, master_eligible: false, ...timers }), 'y');
    const masterId = await agreedMaster([eligible, x, y], 'the three to agree');
    assert.equal(masterId, idOf(eligible), 'the only eligible node is master, whatever the ids');
    assert.throws(() => x.promote(), { code: 'ERR_ESPIAL_NOT_ELIGIBLE' });

    // The only eligible node leaves: nobody is master, and stays so.
    const leftAt = performance.now();
    await within(WAIT_MS, eligible.exit(), () => 'eligible: exit() took over 10 s');
    await Promise.all(
      [x, y].map((m) =>
        m.events.until(`${m.name}: no master`, () => m.events.first('removed_node', byId(masterId)) && !m.get_master()),
      ),
    );
    await delay(TIMEOUT * 4);
    for (const m of [x, y]) {
      assert.equal(m.get_master(), undefined, `${m.name}: get_master()`);
      assert.equal(m.is_master(), false);
      assert.deepEqual(after(m, 'new_master', leftAt), [], `${m.name}: no new_master for nobody`);
      assert.deepEqual(m.events.seen('promotion'), [], `${m.name} was never promoted`);
      assert.deepEqual(ids(m.get_nodes()), [idOf(m === x ? y : x)]);
    }

    // An eligible node that joins becomes master, and the others follow it.
    const f = scope.node(manualOptions({ port: portF, cluster, peers: [`127.0.0.1:${portX}`], ...timers }), 'f');
    assert.equal(await agreedMaster([x, y, f], 'the newcomer to become master'), idOf(f));
  });
});

test('a lone node becomes master after master_election_timeout', async () => {
  await withNodes(async (scope) => {
    const [port, multicastPort] = randomPorts(2);
    const createdAt = performance.now();
    const lone = scope.node(loopbackOptions({ port, multicastPort, cluster: uniqueCluster(), master_election_timeout: TIMEOUT }), 'lone');
    await lone.events.next('listening', 'lone: listening');
    assert.equal(lone.get_master(), undefined, 'no master before the timeout');
    assert.equal(lone.is_master(), false);
    const [promotion, announced] = await Promise.all([
      lone.events.next('promotion', 'lone: promotion'),
      lone.events.next('new_master', 'lone: new_master'),
    ]);
    const elapsed = promotion.at - createdAt;
    assert.ok(elapsed >= TIMEOUT, `promoted ${Math.round(elapsed)} ms after creation; not before ${TIMEOUT} ms`);
    assert.ok(elapsed < TIMEOUT + 2000, `promoted ${Math.round(elapsed)} ms after creation`);
    assert.deepEqual(promotion.arg, { previous_master: undefined });
    assert.ok('previous_master' in promotion.arg);
    assert.deepEqual(announced.arg, lone.get_node_info(), 'new_master names the node itself');
    assert.deepEqual(lone.get_master(), lone.get_node_info());
    assert.equal(lone.is_master(), true);
    await delay(TIMEOUT * 2);
    assert.equal(lone.events.seen('promotion').length, 1);
    assert.equal(lone.events.seen('new_master').length, 1);
    assert.deepEqual(lone.events.seen('demotion'), []);
  });
});

test('nodes joining a cluster adopt its master, whatever their ids', async (t) => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, ...ports] = randomPorts(4);
    const a = scope.node(manualOptions({ port: portA, cluster, master_election_timeout: TIMEOUT }), 'a');
    await a.events.next('promotion', 'a: promotion');
    const aObject = a.get_node_info();
    // The newcomers' own timeout is the default (1000 ms): far more than joining takes.
    const newcomers = ports.map((port, i) =>
      scope.node(manualOptions({ port, cluster, peers: [`127.0.0.1:${portA}`] }), `newcomer ${i}`),
    );
    const all = [a, ...newcomers];
    assert.equal(await agreedMaster(all, 'the newcomers to adopt a'), aObject.id);
    // Past the newcomers' own election timeout: still nothing moves.
    await delay(1500);
    assert.equal(await agreedMaster(all, 'a to stay master', 1000), aObject.id);
    assert.deepEqual(a.events.seen('new_master'), [aObject], 'a announced itself once, and nothing since');
    assert.deepEqual(a.events.seen('demotion'), []);
    for (const n of newcomers) {
      assert.deepEqual(n.events.seen('new_master'), [aObject], `${n.name}: new_master names a, once`);
      assert.deepEqual(n.events.seen('promotion'), [], `${n.name} was never promoted`);
    }
    const smaller = newcomers.filter((n) => idOf(n) < aObject.id).length;
    t.diagnostic(`${smaller} of the 3 newcomers have a smaller id than the master`);
  });
});

test('master_quorum: no master without the quorum; a master that loses it steps down', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portB] = randomPorts(2);
    const quorum = { master_quorum: 2, master_election_timeout: TIMEOUT };
    const a = scope.node(manualOptions({ port: portA, cluster, ...quorum }), 'a');
    await a.events.next('listening', 'a: listening');
    await delay(TIMEOUT * 4);
    assert.equal(a.get_master(), undefined, 'alone, below the quorum, a is no master');
    assert.deepEqual(a.events.seen('promotion'), []);

    const b = scope.node(manualOptions({ port: portB, cluster, peers: [`127.0.0.1:${portA}`], ...quorum }), 'b');
    const masterId = await agreedMaster([a, b], 'a and b to agree once the quorum is there');
    const master = masterId === idOf(a) ? a : b;
    const other = master === a ? b : a;

    // The other one leaves: the master is below the quorum and resigns.
    const leftAt = performance.now();
    await within(WAIT_MS, other.exit(), () => `${other.name}: exit() took over 10 s`);
    const { arg: successor } = await master.events.next('demotion', `${master.name}: demotion`, () => true);
    assert.equal(successor, undefined, 'demotion without a successor');
    assert.equal(master.get_master(), undefined);
    assert.equal(master.is_master(), false);
    await delay(TIMEOUT * 4);
    assert.equal(master.get_master(), undefined, 'still no master');
    assert.deepEqual(after(master, 'promotion', leftAt), []);
  });
});

test('a healed partition: two lone masters meet, the smaller id wins at equal terms, the other steps down', async () => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [portA, portB, portC] = randomPorts(3);
    // No multicast and no seeds: a and b cannot find each other, and each elects itself.
    const a = scope.node(manualOptions({ port: portA, cluster, master_election_timeout: TIMEOUT }), 'a');
    const b = scope.node(manualOptions({ port: portB, cluster, master_election_timeout: TIMEOUT }), 'b');
    await Promise.all([a.events.next('promotion', 'a: promotion'), b.events.next('promotion', 'b: promotion')]);
    assert.equal(a.is_master(), true);
    assert.equal(b.is_master(), true);
    assert.deepEqual(a.get_nodes(), []);

    // c knows both: through it they meet, and one master must remain.
    const healedAt = performance.now();
    const c = scope.node(
      manualOptions({ port: portC, cluster, peers: [`127.0.0.1:${portA}`, `127.0.0.1:${portB}`] }),
      'c',
    );
    const winnerId = await agreedMaster([a, b, c], 'a, b and c to agree on one master');
    const winner = winnerId === idOf(a) ? a : b;
    const loser = winner === a ? b : a;
    assert.ok(winnerId === idOf(a) || winnerId === idOf(b), 'one of the two masters remains');
    // Each won its first election alone: the same term, so the smaller id wins.
    assert.equal(winnerId, smallest([a, b]), 'at equal terms the smaller id wins');
    const demotions = after(loser, 'demotion', healedAt);
    assert.equal(demotions.length, 1, `${loser.name} emitted demotion once`);
    assert.deepEqual(demotions[0].arg, winner.get_node_info(), 'demotion names the winner');
    assert.deepEqual(after(winner, 'demotion', healedAt), [], `${winner.name} was not demoted`);
    assert.deepEqual(after(winner, 'new_master', healedAt), [], `${winner.name} saw no change`);
    assert.deepEqual(after(loser, 'new_master', healedAt).map((e) => e.arg), [winner.get_node_info()]);
    assert.deepEqual(c.events.seen('new_master').at(-1), winner.get_node_info());
    assert.deepEqual(c.events.seen('promotion'), [], 'c was never promoted');
    assertCleanHistory([a, b, c]);
  });
});

test('a node paused with SIGSTOP past the failure detector comes back without taking mastership: the master stays, no demotion', async (t) => {
  await withNodes(async (scope) => {
    const cluster = uniqueCluster();
    const [multicastPort, ...ports] = randomPorts(5);
    // Heartbeats every 500 ms: a node silent for 2.5 s is removed.
    const members = await Promise.all(
      ports.map((port, i) =>
        scope.child(loopbackOptions({ port, multicastPort, cluster, send_presence_frequency: 500 }), `p${i}`),
      ),
    );
    const master = await agreedMaster(members, 'the four nodes to agree on one master');
    const paused = members.find((m) => idOf(m) !== master);
    const stoppedAt = performance.now();
    paused.proc.kill('SIGSTOP');
    try {
      // Longer than the detector's bound and the election timeout: the others remove it, and
      // on its return it finds every member silent for 3 s.
      await delay(3000);
    } finally {
      paused.proc.kill('SIGCONT');
    }
    const again = await agreedMaster(members, 'the four nodes to agree again after SIGCONT', 15_000);
    t.diagnostic(`after a 3 s SIGSTOP of ${paused.name} the four agreed again within ${Math.round(performance.now() - stoppedAt - 3000)} ms`);
    const removedIt = members.filter((m) => m !== paused && after(m, 'removed_node', stoppedAt).length > 0).length;
    const itRemoved = after(paused, 'removed_node', stoppedAt).length;
    const itPromoted = after(paused, 'promotion', stoppedAt).length;
    t.diagnostic(`${removedIt} of 3 removed it; it removed ${itRemoved}; it promoted itself ${itPromoted} time(s)`);
    assert.ok(removedIt > 0, 'the pause outlasted the failure detector (else this test proves nothing)');
    assert.equal(again, master, 'the master it had before the pause');
    const masterMember = members.find((m) => idOf(m) === master);
    assert.deepEqual(after(masterMember, 'demotion', stoppedAt), [], 'the master was never demoted');
    for (const m of members.filter((m) => m !== paused)) {
      assert.deepEqual(after(m, 'new_master', stoppedAt), [], `${m.name} saw its master change`);
    }
  });
});
