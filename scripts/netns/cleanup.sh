#!/usr/bin/env bash
# Deletes test bed namespaces left behind by a test run that was killed with SIGKILL (the
# test bed removes its own on exit, SIGINT and SIGTERM). Only names the test bed makes:
# es<6 hex>-br and es<6 hex>-h<N>, and the probe's esp<6 hex>.
set -euo pipefail
for ns in $(ip netns list | awk '{print $1}' | grep -E '^(es[0-9a-f]{6}-(br|h[0-9]+)|esp[0-9a-f]{6})$' || true); do
  for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$ns" && echo "deleted $ns"
done
