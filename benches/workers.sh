#!/usr/bin/env bash
# workers = 2 against workers = 1 on this machine: the example's echo handler, nothing
# pinned (the workers need both cores; the load generator shares them), pipelined echo
# (64 connections × 16 in flight, 1 KiB, 3 s) and a handshake storm (10,000, 32 at a
# time). JSON lines in benches/results/workers.jsonl, then a table.
#   bash benches/workers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benches/results/workers.jsonl
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet -p ws-bench
ROOT="$(scripts/build.sh lua5.4)"
source benches/lib.sh
PID=""
trap stop_pid EXIT
: >"$OUT"
for w in 1 2; do
  for run in echo storm; do
    log=benches/results/workers-$w.stdout
    LUA_CPATH="$ROOT/?.so;;" lua5.4 benches/lua/workers_server.lua "$w" >"$log" 2>&1 &
    PID=$!
    port="$(port_of "$log" "the server")" || exit 1
    if [ "$run" = echo ]; then
      target/release/loadgen echo --ws "ws://127.0.0.1:$port/echo" --conns 64 --window 16 --size 1024 \
        --seconds 3 --regime pipelined --label "workers=$w" | tee -a "$OUT" >&2
    else
      target/release/loadgen storm --ws "ws://127.0.0.1:$port/echo" --count 10000 --concurrency 32 \
        --label "workers=$w" | tee -a "$OUT" >&2
    fi
    stop_pid
  done
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
get = lambda label, mode: next(r for r in rows if r["label"] == label and r["mode"] == mode)
print("| | workers = 1 | workers = 2 | **2 / 1** |")
print("|---|---|---|---|")
for mode, key, what in [("echo", "msgs_per_s", "1 KiB echo, 64 × 16 pipelined: messages/s"),
                        ("storm", "handshakes_per_s", "handshake storm: handshakes/s")]:
    a, b = get("workers=1", mode)[key], get("workers=2", mode)[key]
    print(f"| {what} | {a:,.0f} | {b:,.0f} | **{b / a:.2f}** |")
PY
