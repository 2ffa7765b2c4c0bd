#!/usr/bin/env bash
# The module's loop driven by ws.step from a luv loop (examples/hosts/luv.lua) against
# server:run() (examples/server.lua): the same echo handler, the echo cell of run.sh that
# measures CPU per message (1 KiB, 64 connections x 16 pipelined), RUNS (5) runs each,
# alternating; server on CPU 0, load generator on CPU 1. JSON lines in
# benches/results/hosts.jsonl, then a table of medians.
#   bash benches/hosts.sh          (needs Debian's lua-luv for Lua 5.4)
set -euo pipefail
cd "$(dirname "$0")/.."
CELL_SECONDS="${CELL_SECONDS:-3}"
OUT=benches/results/hosts.jsonl
lua5.4 -e 'require "luv"' 2>/dev/null || { echo "hosts.sh: luv for Lua 5.4 is missing (apt-get install lua-luv)" >&2; exit 1; }
cargo build --release --quiet -p ws-bench
source benches/lib.sh
build_modules lua5.4
pin_and_trap
: >"$OUT"
for _ in $(seq "${RUNS:-5}"); do
  for server in lua lua-luv; do
    start_server "$server"
    "${LOADGEN[@]}" echo "${TARGET[@]}" --conns 64 --window 16 --size 1024 --regime pipelined \
      --seconds "$CELL_SECONDS" --pid "$PID" --label "$server" | tee -a "$OUT" >&2
    stop_pid
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda label, key: statistics.median(r[key] for r in rows if r["label"] == label)
run, step = med("lua", "server_cpu_us_per_msg"), med("lua-luv", "server_cpu_us_per_msg")
print("| 1 KiB echo, 64 × 16 pipelined (median of runs) | server:run() | ws.step from luv | **luv / run** |")
print("|---|---|---|---|")
print(f"| server CPU µs per message | {run:.3f} | {step:.3f} | **{step / run:.2f}×** |")
least = lambda label: min(r["server_cpu_us_per_msg"] for r in rows if r["label"] == label)
print(f"| the same, least of the runs | {least('lua'):.3f} | {least('lua-luv'):.3f} | {least('lua-luv') / least('lua'):.2f}× |")
print(f"| messages/s | {med('lua', 'msgs_per_s'):,.0f} | {med('lua-luv', 'msgs_per_s'):,.0f} | |")
print(f"| load generator busy share | {med('lua', 'loadgen_busy'):.2f} | {med('lua-luv', 'loadgen_busy'):.2f} | |")
PY
