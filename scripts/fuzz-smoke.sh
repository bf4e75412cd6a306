#!/usr/bin/env bash
# A short, time-boxed run of every cargo-fuzz target (fuzz/): FUZZ_SECONDS each (default
# 20). Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Fails if any target finds a crash (its input is left in fuzz/artifacts/<target>/).
# For long runs see TESTING.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-20}"
targets=(frame_decoder message_decode beacon_decode handshake session_open cluster_peer probe_open)

cargo +nightly fuzz build
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  # -max_total_time bounds libFuzzer itself; timeout is a safety net on top.
  # grep hides libFuzzer's chatter; the exit status that matters is cargo fuzz's. (With
  # pipefail, `pipeline || true` ran `true` on a crash and PIPESTATUS then said 0: two
  # crashes passed unnoticed once.)
  status=0
  timeout --kill-after=10 "$((seconds + 60))" \
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=4096 -print_final_stats=1 \
      2>&1 | { grep -E '^(#[0-9]+.*DONE|INFO: -max_total_time|==[0-9]+==|stat::number_of_executed_units|SUMMARY|artifact_prefix|Test unit written)' || true; } || status=$?
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target FAILED (see fuzz/artifacts/$target/)" >&2
    exit 1
  fi
done
echo "== fuzz smoke: all ${#targets[@]} targets ran ${seconds}s without a crash"
