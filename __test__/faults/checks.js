'use strict';

// The checks of a fault run, as pure functions of what the runner recorded, each returning
// { name, ok, details: [lines] , figures? }. A process is one run of the agent on one host:
//   { key: 'h3#2' (host 3, second process), host, id, end: 'alive' | 'killed' | 'exited',
//     events: [{ ev, id, at, … }] as streamed, report: the agent's report or undefined }

const short = (id) => (id === undefined ? 'none' : String(id).slice(0, 8));

// [0,1,2,5,6,9] → "0-2,5-6,9"; at most `max` runs.
function ranges(numbers, max = 12) {
  const sorted = [...numbers].sort((a, b) => a - b);
  const runs = [];
  for (const n of sorted) {
    const last = runs[runs.length - 1];
    if (last && n === last[1] + 1) last[1] = n;
    else runs.push([n, n]);
  }
  const text = runs.slice(0, max).map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`));
  if (runs.length > max) text.push(`… (${runs.length - max} more runs)`);
  return text.join(',');
}

function nameOf(processes) {
  const byId = new Map(processes.map((p) => [p.id, p.key]));
  return (id) => (byId.has(id) ? `${byId.get(id)}(${short(id)})` : short(id));
}

/**
 * Event alternation on every process: added_node/removed_node alternate per id, starting
 * with added_node, and `undelivered` for an id comes only after its removed_node;
 * promotion/demotion alternate, starting with promotion; new_master names this node or a
 * member it sees, and this node's own new_master count equals its promotions. No `error`
 * event. A new_master naming the master the node already had is a note, not a failure (see
 * below).
 */
function checkEvents(processes) {
  const name = nameOf(processes);
  const details = [];
  const repeats = [];
  for (const p of processes) {
    const member = new Map(); // id -> 'added' | 'removed'
    let master;
    let isMaster = false;
    let promotions = 0;
    let selfMasters = 0;
    const bad = (e, why) => details.push(`${p.key}: ${why} (${e.ev} ${name(e.id)} at +${e.rel} ms)`);
    for (const e of p.events) {
      switch (e.ev) {
        case 'added_node':
          if (member.get(e.id) === 'added') bad(e, 'added_node twice without removed_node');
          member.set(e.id, 'added');
          break;
        case 'removed_node':
          if (member.get(e.id) !== 'added') bad(e, 'removed_node of a node not added');
          member.set(e.id, 'removed');
          if (master === e.id) master = undefined;
          break;
        case 'undelivered':
          if (member.get(e.id) !== 'removed') bad(e, 'undelivered for a node not removed');
          break;
        case 'promotion':
          if (isMaster) bad(e, 'promotion twice without demotion');
          isMaster = true;
          promotions++;
          break;
        case 'demotion':
          if (!isMaster) bad(e, 'demotion without promotion');
          isMaster = false;
          if (master === p.id) master = undefined;
          break;
        case 'new_master':
          // A node left without a master (the master suspected, say) is told nothing: no
          // event says so, get_master() just returns undefined. So new_master for the master
          // it had before is allowed (that gap came between), and counted.
          if (e.id !== undefined && e.id === master) repeats.push(`${p.key}: new_master ${name(e.id)} again at +${e.rel} ms`);
          if (e.id !== undefined && e.id !== p.id && member.get(e.id) !== 'added') bad(e, 'new_master names a node it does not see');
          if (e.id === p.id) selfMasters++;
          master = e.id;
          break;
        case 'error':
          details.push(`${p.key}: error event ${e.code}: ${e.message}`);
          break;
        default:
      }
    }
    if (promotions !== selfMasters) details.push(`${p.key}: ${promotions} promotion events but ${selfMasters} new_master naming itself`);
  }
  return { name: 'events alternate', ok: details.length === 0, details, notes: repeats };
}

/** What arrived at every process with a report: from each sender, increasing (no duplicate, no reordering). */
function checkOrder(processes) {
  const name = nameOf(processes);
  const details = [];
  let streams = 0;
  let messages = 0;
  for (const p of processes) {
    if (!p.report) continue;
    for (const [from, list] of Object.entries(p.report.received)) {
      streams++;
      messages += list.length;
      const seen = new Set();
      for (let i = 1; i < list.length; i++) {
        if (list[i] <= list[i - 1]) {
          const what = seen.has(list[i]) || list.slice(0, i).includes(list[i]) ? 'duplicate' : 'reordered';
          details.push(`${name(from)} → ${p.key}: ${what}: ${list[i]} arrived after ${list[i - 1]} (arrival #${i})`);
          break;
        }
        seen.add(list[i - 1]);
      }
    }
    for (const odd of p.report.oddities) details.push(`${p.key}: unexpected payload from ${name(odd.from)}: ${JSON.stringify(odd.data)}`);
  }
  return {
    name: 'no duplicate, no reordering',
    ok: details.length === 0,
    details,
    figures: { streams, messages },
  };
}

function missingBetween(sender, receiver) {
  const sent = sender.report.sent[receiver.id];
  if (!sent) return { resolved: 0, missing: [] };
  const arrived = new Set(receiver.report.received[sender.id] || []);
  const reported = new Set(sender.report.undelivered[receiver.id] || []);
  const missing = sent.resolved.filter((n) => !arrived.has(n) && !reported.has(n));
  return { resolved: sent.resolved.length, missing, reported: reported.size, arrived: arrived.size };
}

/**
 * Between every two processes alive to the end: every send() that resolved arrived, or was
 * reported in `undelivered` (which needs a removal: a report with no removed_node before it
 * is an alternation failure), and at least `minPerPair` resolved.
 */
function checkDelivery(processes, minPerPair = 0) {
  const name = nameOf(processes);
  const live = processes.filter((p) => p.end === 'alive' && p.report);
  const details = [];
  let resolved = 0;
  let reported = 0;
  let pairs = 0;
  for (const s of live) {
    for (const r of live) {
      if (s === r) continue;
      pairs++;
      const m = missingBetween(s, r);
      resolved += m.resolved;
      reported += m.reported ?? 0;
      // Traffic flowed between every two live nodes (they shared a cluster for the settle
      // period), so that a pass is not a pass over nothing.
      if (m.resolved < minPerPair) details.push(`${s.key}(${short(s.id)}) → ${name(r.id)}: only ${m.resolved} resolved sends (fewer than ${minPerPair})`);
      if (m.missing.length === 0) continue;
      const removals = s.events.filter((e) => e.ev === 'removed_node' && e.id === r.id).map((e) => `+${e.rel}`);
      const why = removals.length > 0 ? `removed at ${removals.join(',')} ms and not reported` : 'never removed, no undelivered';
      details.push(
        `${s.key}(${short(s.id)}) → ${name(r.id)}: ${m.missing.length} of ${m.resolved} resolved sends lost (${why}): ${ranges(m.missing)}`,
      );
    }
  }
  return {
    name: 'resolved sends delivered or reported',
    ok: details.length === 0,
    details,
    figures: { pairs, resolved, reported },
  };
}

module.exports = { checkEvents, checkOrder, checkDelivery, missingBetween, ranges, short };
