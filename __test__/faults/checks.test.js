'use strict';

// The fault test's own parts, without namespaces: the schedule is a pure function of the seed,
// and each check fails on the fault it is there to find (a checker that cannot fail is no test).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { generate, parseSeeds } = require('./schedule.js');
const { checkEvents, checkOrder, checkDelivery, ranges } = require('./checks.js');

const PHASE = { phaseMs: 30_000, startMs: 2_000 };

test('the schedule is a pure function of the seed, within its bounds', () => {
  for (let seed = 0; seed < 200; seed++) {
    const a = generate(seed, PHASE);
    assert.deepEqual(generate(seed, PHASE), a, `seed ${seed} twice`);
    assert.ok(a.hosts >= 5 && a.hosts <= 7);
    assert.ok(a.faults.length > 0);
    for (const f of a.faults) {
      assert.ok(f.at >= PHASE.startMs && f.at < PHASE.phaseMs);
      if (f.kind === 'cut') assert.ok(f.ms >= 500 && f.ms <= 3000);
      if (f.kind === 'pause') assert.ok(f.ms >= 1000 && f.ms <= 8000);
      if (f.group) assert.ok(f.group.length >= 1 && f.group.length <= a.hosts / 2);
    }
    // Every fault that starts also ends: each host is cut, stopped and moved as often as healed.
    const count = (op) => a.steps.filter((s) => s.op === op).length;
    assert.equal(count('cut'), count('restore'));
    assert.equal(count('stop'), count('cont'));
    assert.equal(count('partition'), count('heal'));
    assert.equal(count('kill') + count('exit'), count('start'));
  }
  assert.notDeepEqual(generate(1, PHASE), generate(2, PHASE));
});

test('seeds are given as one, a range or a list', () => {
  assert.deepEqual(parseSeeds('7'), [7]);
  assert.deepEqual(parseSeeds('1-4'), [1, 2, 3, 4]);
  assert.deepEqual(parseSeeds('1,5,9-10'), [1, 5, 9, 10]);
  assert.throws(() => parseSeeds('x'), RangeError);
  assert.throws(() => parseSeeds('5-1'), RangeError);
});

// Two processes alive to the end, a and b, and what each recorded.
function pair({ aToB = [0, 1, 2, 3], arrived = [0, 1, 2, 3], undelivered = [], events = [] } = {}) {
  const a = {
    key: 'h1#1',
    id: 'a'.repeat(16),
    end: 'alive',
    events,
    report: { received: {}, sent: {}, undelivered: {}, oddities: [] },
  };
  const b = { key: 'h2#1', id: 'b'.repeat(16), end: 'alive', events: [], report: { received: {}, sent: {}, undelivered: {}, oddities: [] } };
  a.report.sent[b.id] = { next: aToB.length, resolved: aToB, refused: [], pending: undefined };
  b.report.received[a.id] = arrived;
  if (undelivered.length) a.report.undelivered[b.id] = undelivered;
  return [a, b];
}

test('delivery: a resolved send that neither arrived nor was reported fails, naming the pair and the numbers', () => {
  assert.ok(checkDelivery(pair()).ok);
  const lost = checkDelivery(pair({ arrived: [0, 3] }));
  assert.equal(lost.ok, false);
  assert.match(lost.details[0], /h1#1.*→ h2#1.*2 of 4 resolved sends lost \(never removed, no undelivered\): 1-2/);
  // Reported in undelivered after a removal: accounted for.
  const b = 'b'.repeat(16);
  const removed = [
    { ev: 'added_node', id: b, rel: 0 },
    { ev: 'removed_node', id: b, rel: 10 },
    { ev: 'undelivered', id: b, rel: 10 },
  ];
  assert.ok(checkDelivery(pair({ arrived: [0, 3], undelivered: [1, 2], events: removed })).ok);
  const partly = checkDelivery(pair({ arrived: [0], undelivered: [1, 2], events: removed }));
  assert.equal(partly.ok, false);
  assert.match(partly.details[0], /removed at \+10 ms and not reported\): 3/);
});

test('order: a duplicate or a reordering on any stream fails', () => {
  assert.ok(checkOrder(pair()).ok);
  const dup = checkOrder(pair({ arrived: [0, 1, 1, 2] }));
  assert.equal(dup.ok, false);
  assert.match(dup.details[0], /duplicate: 1 arrived after 1/);
  const swapped = checkOrder(pair({ arrived: [0, 2, 1, 3] }));
  assert.match(swapped.details[0], /reordered: 1 arrived after 2/);
});

test('events: added/removed, promotion/demotion and new_master must alternate', () => {
  const me = 'm'.repeat(16);
  const x = 'x'.repeat(16);
  const run = (events) => checkEvents([{ key: 'h1#1', id: me, end: 'alive', events: events.map((e, i) => ({ rel: i, ...e })) }]);
  const good = [
    { ev: 'added_node', id: x },
    { ev: 'new_master', id: x },
    { ev: 'removed_node', id: x },
    { ev: 'undelivered', id: x },
    { ev: 'new_master', id: me },
    { ev: 'promotion' },
    { ev: 'added_node', id: x },
    { ev: 'demotion', id: x },
    { ev: 'new_master', id: x },
  ];
  assert.deepEqual(run(good).details, []);
  assert.match(run([{ ev: 'added_node', id: x }, { ev: 'added_node', id: x }]).details[0], /added_node twice/);
  assert.match(run([{ ev: 'removed_node', id: x }]).details[0], /removed_node of a node not added/);
  assert.match(run([{ ev: 'added_node', id: x }, { ev: 'undelivered', id: x }]).details[0], /undelivered for a node not removed/);
  assert.match(run([{ ev: 'new_master', id: me }, { ev: 'promotion' }, { ev: 'promotion' }]).details.join(), /promotion twice/);
  assert.match(run([{ ev: 'demotion' }]).details[0], /demotion without promotion/);
  // The same master told again: a gap without a master came between (no event tells it).
  const again = run([{ ev: 'added_node', id: x }, { ev: 'new_master', id: x }, { ev: 'new_master', id: x }]);
  assert.ok(again.ok);
  assert.match(again.notes[0], /new_master .* again/);
  assert.match(run([{ ev: 'new_master', id: x }]).details[0], /does not see/);
  assert.match(run([{ ev: 'promotion' }]).details[0], /1 promotion events but 0 new_master/);
  assert.match(run([{ ev: 'error', code: 'ERR_X', message: 'boom' }]).details[0], /error event ERR_X/);
});

test('ranges are printed compactly', () => {
  assert.equal(ranges([5, 1, 2, 3, 9]), '1-3,5,9');
  assert.match(ranges(Array.from({ length: 40 }, (_, i) => i * 2), 3), /^0,2,4,… \(37 more runs\)$/);
});
