#!/usr/bin/env bash
# Why the threads of a node went off the CPU during the ping-pongs: groups the stacks of a
# `perf record -e sched:sched_switch -g` (from `node bench/run.js --perf DIR --perf-event
# sched:sched_switch`) by thread and cause. Usage: bench/perf-switches.sh FILE.perf.data
set -euo pipefail
perf script -i "$1" 2>/dev/null | awk '
  BEGIN { RS = "" }
  /sched_switch/ {
    split($0, lines, "\n"); split(lines[1], head, " ")
    thread = (head[1] == "node") ? "JS main thread" : (head[1] == "espial") ? "espial runtime thread" : head[1]
    why = "other"
    if ($0 ~ /do_epoll_wait/) why = "sleeps in epoll (waits for work)"
    else if ($0 ~ /AsyncCb/) why = "futex: Node.js threadsafe-function queue mutex (napi AsyncCb)"
    else if ($0 ~ /futex_wait/ && $0 ~ /espial\.linux/) why = "futex: a lock in the espial addon"
    else if ($0 ~ /futex_wait/) why = "futex: other"
    else if ($0 ~ /__send/) why = "preempted after send() (woke the peer)"
    else if ($0 ~ /libc_write/) why = "preempted after write() (eventfd: woke the JS thread)"
    else if ($0 ~ /lll_lock_wake/) why = "preempted after waking a lock waiter"
    else if ($0 ~ /prev_state=R/) why = "preempted (other)"
    count[thread " | " why]++
  }
  END { for (k in count) printf "%7d  %s\n", count[k], k }' | sort -rn
