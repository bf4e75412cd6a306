#!/usr/bin/env bash
# Groups the samples of a `perf record` (from `node bench/run.js --perf DIR`) into where the
# time goes: JS wrapper, napi conversion, V8 JSON, Rust crypto, Rust other, allocator,
# kernel scheduler / syscalls, … Usage: bench/perf-categories.sh FILE.perf.data
set -euo pipefail
perf report -i "$1" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null |
  awk '
    /^#/ || NF == 0 { next }
    {
      pct = $1; sub("%", "", pct); comm = $2; dso = $3; $1 = $2 = $3 = ""; sym = $0
      thread = (comm == "node") ? "JS main thread" : (comm == "espial") ? "espial runtime threads" : (comm == "tokio-rt-worker") ? "napi-rs tokio threads (send promises)" : comm
      if (dso ~ /kallsyms/) {
        if (sym ~ /finish_task_switch|_raw_spin_unlock_irq|schedule|futex|try_to_wake_up|ttwu|select_task_rq|enqueue|dequeue/) cat = "kernel: scheduling / wake-ups"
        else cat = "kernel: syscalls, TCP, epoll"
      } else if (sym ~ /aes|polyval|ghash|Aes128|Polyval|gcm|Gcm|seal|open|crypto/) cat = "Rust crypto (AES-GCM)"
      else if (sym ~ /napi|WriteUtf8|Utf8Length|Utf8Decoder|NewFromUtf8|FromNapiValue|ToNapiValue|CreateTypedArray|ArrayBuffer|v8::Object::Get|v8::Object::Set|napi_/) cat = "napi conversion (strings, arrays, Buffers)"
      else if (sym ~ /NodeId|LowerHex|pad_integral|fmt::write|Formatter|write_str|from_str|from_utf8/) cat = "Rust: NodeId hex parse/format"
      else if (sym ~ /malloc|free|realloc|_int_|unlink_chunk|memmove|memcpy|memset|consolidate/) cat = "allocator + memcpy"
      else if (sym ~ /Json/) cat = "V8 JSON stringify/parse"
      else if (sym ~ /JS:.*(index\.js|lib\/)/) cat = "espial JS (index.js, lib/)"
      else if (sym ~ /JS:.*bench/) cat = "benchmark harness JS"
      else if (dso ~ /espial/ || sym ~ /tokio|espial::/) cat = "Rust: tokio + espial core/driver"
      else if (dso ~ /JIT/ || sym ~ /JS:|Builtins_/) cat = "V8 JIT code + builtins (JS, promises, events)"
      else if (sym ~ /v8::|Scavenger|Heap|GC|Mark/) cat = "V8 runtime + GC"
      else cat = "other (" dso ")"
      by[thread " | " cat] += pct; tot[thread] += pct
    }
    END {
      for (k in by) printf "%6.1f%%  %s\n", by[k], k
      for (t in tot) printf "%6.1f%%  %s | TOTAL\n", tot[t], t
    }' | sort -rn
