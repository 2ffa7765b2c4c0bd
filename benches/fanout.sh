#!/usr/bin/env bash
# The fan-out benchmark: one publisher, N subscribers of one topic, in one run against
#   topic  this module, ws.publish to a topic (benches/lua/fanout_topic.lua)
#   loop   this module, a Lua try_send loop over a members table (benches/lua/fanout_loop.lua)
#   node   Node's ws 8 broadcasting in a loop over wss.clients (benches/peers/ws_broadcast.js)
# for N = 1,000 and 10,000 and messages of 64 B and 1 KiB; the publisher keeps 4 messages
# in delivery (benches/src/bin/loadgen.rs, mode fanout). Server on CPU 0, load on CPU 1.
# Prints deliveries/s and the server's CPU per delivery; JSON lines in
# benches/results/fanout.jsonl.
#   bash benches/fanout.sh    (after benches/run.sh has built and installed what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benches/results/fanout.jsonl
SECONDS_PER_CELL="${CELL_SECONDS:-3}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet -p ws-bench
ROOT="$(scripts/build.sh lua5.4)"
if [ "$(nproc)" -ge 2 ]; then PIN0=(taskset -c 0); PIN1=(taskset -c 1); else PIN0=(); PIN1=(); fi

source benches/lib.sh
PID=""
trap stop_pid EXIT

: >"$OUT"
for label in topic loop node; do
  for subs in 1000 10000; do
    for size in 64 1024; do
      log=benches/results/fanout-$label.stdout
      if [ "$label" = node ]; then
        NODE_PATH=build/node/node_modules "${PIN0[@]}" node benches/peers/ws_broadcast.js >"$log" 2>&1 &
        path=/
      else
        LUA_CPATH="$ROOT/?.so;;" "${PIN0[@]}" lua5.4 benches/lua/fanout_server.lua >"$log" 2>&1 &
        path=/$label
      fi
      PID=$!
      port="$(port_of "$log" "$label")" || exit 1
      "${PIN1[@]}" target/release/loadgen fanout --ws "ws://127.0.0.1:$port$path" --subscribers "$subs" \
        --size "$size" --window 4 --seconds "$SECONDS_PER_CELL" --pid "$PID" --label "$label" | tee -a "$OUT" >&2
      stop_pid
    done
  done
done

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cell = {(r["label"], r["subscribers"], r["size"]): r for r in rows}
print("| subscribers × size | topic: deliveries/s | topic: server CPU µs/delivery | Lua try_send loop | Node ws loop | **loop/topic CPU** | **node/topic CPU** | missing |")
print("|---|---|---|---|---|---|---|---|")
for subs in (1000, 10000):
    for size in (64, 1024):
        t, l, n = (cell.get((k, subs, size)) for k in ("topic", "loop", "node"))
        cpu = lambda r: r and r["server_cpu_us_per_delivery"]
        ratio = lambda a, b: f"{cpu(a) / cpu(b):.2f}" if cpu(a) and cpu(b) else ""
        fmt = lambda r: f"{r['deliveries_per_s']:,.0f} / {cpu(r)}" if r else ""
        missing = sum(r["missing"] for r in (t, l, n) if r)
        print(f"| {subs:,} × {size} B | {t['deliveries_per_s']:,.0f} | {cpu(t)} | {fmt(l)} | {fmt(n)} | **{ratio(l, t)}** | **{ratio(n, t)}** | {missing} |")
PY
