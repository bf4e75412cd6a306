#!/usr/bin/env bash
# bench/perf-per-roundtrip.sh FILE.perf.data ROUNDTRIPS HZ: a `perf record -F HZ` of one process over
# ROUNDTRIPS round trips (`node bench/run.js --perf DIR`), as µs of CPU per round trip by category
# (self samples; finer than bench/perf-categories.sh, in µs rather than % so that systems compare).
perf report -i "$1" --no-children -n --sort dso,sym --stdio -g none 2>/dev/null | awk -v rt="$2" -v hz="$3" '
 /^#/ || NF < 4 { next }
 { n=$2; dso=$3; sym=""; for(i=5;i<=NF;i++) sym=sym" "$i;
   if (dso ~ /kallsyms/) { if (sym ~ /finish_task_switch|_raw_spin_unlock_irq|schedule|try_to_wake_up|ttwu|select_task|enqueue|dequeue|update_curr|pick_next|psi_/) c="kernel sched"; else if (sym ~ /tcp|ip_|skb|veth|netif|net_|sock|__dev|nf_|inet|dst_|eth|neigh|napi|__kfree|kmem|kfree|alloc/) c="kernel net+mem"; else if (sym ~ /epoll|ep_|eventfd/) c="kernel epoll/eventfd"; else c="kernel other (syscall entry,...)" }
   else if (dso ~ /espial/) { if (sym ~ /napi|ToNapiValue|FromNapiValue|bindgen/) c="espial: napi-rs conversion"; else if (sym ~ /aes|polyval|Polyval|ghash|gcm|Aes|black_box/) c="espial: AES-GCM"; else c="espial: Rust driver/core/binding" }
   else if (dso ~ /libc/) { if (sym ~ /malloc|free|_int_|realloc|consolidate|tcache/) c="libc malloc/free"; else if (sym ~ /mem(move|cpy|set|cmp)/) c="libc memcpy"; else c="libc other (syscall stubs, locks)" }
   else if (dso ~ /JIT/) c="JIT JS code"
   else if (dso ~ /node/) { if (sym ~ /Scaveng|GC|Heap::|Mark|Sweep|GlobalHandles|Evacuat|Remembered|SlotSet|MemoryChunk|Page::/) c="V8 GC"; else if (sym ~ /napi|v8impl|node_napi/) c="node napi layer"; else if (sym ~ /^ *uv_|uv__/) c="libuv"; else if (sym ~ /Json/) c="V8 JSON"; else if (sym ~ /Builtins_/) c="V8 builtins"; else if (sym ~ /compiler::|Compil|Turbofan|Maglev|baseline|Baseline|Parse|Zone/) c="V8 compiler"; else if (sym ~ /v8::/) c="V8 runtime/API other"; else c="node other" }
   else c="other " dso;
   s[c]+=n; tot+=n }
 END { for (c in s) printf "%7.2f µs  %s\n", s[c]/hz/rt*1e6, c; printf "%7.2f µs  TOTAL\n", tot/hz/rt*1e6 }' | sort -rn
