#!/usr/bin/env bash
# The issue-8 peers table: seq (simd backend) against PyTorch CPU, candle and numpy/OpenBLAS on
# this machine, f32, one and two threads. Outside the workspace build and CI (see README.md).
#
# Usage: conformance/peers/run.sh [TARGET_CPU]      (default x86-64-v3)
# Env:   SEQ_PEERS_TARGET     cargo target dir for seq       (default /tmp/seq-peers-target-LEVEL)
#        PEERS_CANDLE_TARGET  cargo target dir for candle    (default /tmp/seq-peers-candle)
#        PEERS_BUDGET_S       seconds timed per peer case    (default 1)
#        PEERS_FILTER         only cases whose peer name contains this (seq rows: all peers_*)
set -euo pipefail
LEVEL="${1:-x86-64-v3}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SEQ_TARGET="${SEQ_PEERS_TARGET:-/tmp/seq-peers-target-$LEVEL}"
CANDLE_TARGET="${PEERS_CANDLE_TARGET:-/tmp/seq-peers-candle}"
FILTER="${PEERS_FILTER:-}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

echo "== building seq-conformance with -C target-cpu=$LEVEL" >&2
(cd "$ROOT" && CARGO_TARGET_DIR="$SEQ_TARGET" RUSTFLAGS="-C target-cpu=$LEVEL" \
    cargo build --release --target x86_64-unknown-linux-gnu -p seq-conformance >&2)
SEQ="$SEQ_TARGET/x86_64-unknown-linux-gnu/release/seq-conformance"

echo "== building the candle cases (its own Cargo project, not a workspace member)" >&2
(cd "$HERE/candle" && CARGO_TARGET_DIR="$CANDLE_TARGET" cargo build --release --locked >&2)
CANDLE="$CANDLE_TARGET/release/seq-peers-candle"

echo "== seq" >&2
"$SEQ" perf --backend simd --filter peers --json > "$OUT/seq.json"

for t in 1 2; do
    echo "== torch + numpy, $t thread(s)" >&2
    OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t \
        python3 "$HERE/torch_cases.py" "$t" "$FILTER" >> "$OUT/peers.jsonl"
    echo "== candle, $t thread(s)" >&2
    RAYON_NUM_THREADS=$t "$CANDLE" "$FILTER" \
        | sed "s/^{/{\"peer\": \"candle\", \"threads\": $t, /" >> "$OUT/peers.jsonl"
done

echo "# peers table, $(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, seq built with -C target-cpu=$LEVEL"
echo
python3 "$HERE/table.py" "$OUT/seq.json" "$OUT/peers.jsonl"
