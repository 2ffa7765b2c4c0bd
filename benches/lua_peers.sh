#!/usr/bin/env bash
# This module against the Lua WebSocket servers a Lua user would pick instead, side by
# side in one run: lua (Lua 5.4), lua-gen (Lua 5.4, generational GC), luajit, resty
# (lua-resty-websocket on nginx, one worker) and luahttp (lua-http 0.4 on cqueues), with
# tt (tokio-tungstenite, the ceiling of this stack) for the ratio the issue tracks. Servers
# in benches/lib.sh; each runs on CPU 0, the load generator on CPU 1.
#
# Three interleaved rounds (round 1: every server, round 2: every server, ...), each
# round's cells on a freshly started server:
#   pipelined echo 64 connections x 16 in flight, 16 B and 1 KiB (server CPU per message)
#   10,000 idle connections (server RSS per connection)
# The report (benches/report_lua_peers.py) gives the median of the three rounds with the
# min-max, and the load generator's busy share in each cell (near 1.0: the load generator,
# not the server, was the limit).
#
#   bash benches/lua_peers.sh        JSON lines in benches/results/lua_peers.jsonl
#   ROUNDS=1 CELL_SECONDS=2 SERVERS="lua resty" bash benches/lua_peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CELL_SECONDS="${CELL_SECONDS:-3}"
ROUNDS="${ROUNDS:-3}"
SERVERS="${SERVERS:-lua lua-gen luajit tt resty luahttp}"
OUT=benches/results/lua_peers.jsonl

bash benches/setup.sh
cargo build --release --quiet -p ws-bench
source benches/lib.sh
build_modules lua5.4 luajit
pin_and_trap

: >"$OUT"
for round in $(seq "$ROUNDS"); do
  for server in $SERVERS; do
    echo "== round $round: $server" >&2
    start_server "$server"
    for size in 16 1024; do
      "${LOADGEN[@]}" echo "${TARGET[@]}" --conns 64 --window 16 --size "$size" --regime pipelined \
        --seconds "$CELL_SECONDS" --pid "$PID" --label "$server" | tee -a "$OUT" >&2
    done
    stop_pid
    start_server "$server"
    "${LOADGEN[@]}" idle "${TARGET[@]}" --count 10000 --pid "$PID" --label "$server" | tee -a "$OUT" >&2
    stop_pid
  done
done
python3 benches/report_lua_peers.py "$OUT"
