#!/usr/bin/env bash
# The benchmark: the same load, in one run, against three echo servers
#   lua  this module, examples/server.lua (a Lua echo handler at /echo)
#   tt   pure-Rust tokio-tungstenite echo (the ceiling of this stack)   benches/src/bin/tt_echo.rs
#   tcp  raw TCP echo (the floor of the machine)                        benches/src/bin/tcp_echo.rs
# Each server runs on CPU 0 and the load generator on CPU 1 (taskset, when there are two).
# Matrix: 16 B, 1 KiB, 64 KiB x 1 and 64 connections x window 1 and 16; a 2,000-connection
# handshake storm; 10,000 idle connections for memory. Each cell twice.
#
#   bash benches/run.sh            prints the table, writes benches/results/latest.jsonl
#   CELL_SECONDS=5 bash benches/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CELL_SECONDS="${CELL_SECONDS:-3}"
OUT=benches/results/latest.jsonl

cargo build --release --quiet -p ws-bench
ROOT="$(scripts/build.sh lua5.4)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$(nproc)" -ge 2 ] && taskset -c 0 true 2>/dev/null; then
  ON_SERVER_CPU=(taskset -c 0); ON_LOAD_CPU=(taskset -c 1)
else
  ON_SERVER_CPU=(); ON_LOAD_CPU=()
fi
LOADGEN=("${ON_LOAD_CPU[@]}" target/release/loadgen)

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT

# start_server NAME: starts it on an ephemeral port; sets SERVER_PID and TARGET (loadgen args).
start_server() {
  local log="benches/results/$1.stdout"
  case "$1" in
    lua) LUA_CPATH="$ROOT/?.so;;" "${ON_SERVER_CPU[@]}" lua5.4 examples/server.lua 0 >"$log" 2>&1 & ;;
    tt) "${ON_SERVER_CPU[@]}" target/release/tt_echo 0 >"$log" 2>&1 & ;;
    tcp) "${ON_SERVER_CPU[@]}" target/release/tcp_echo 0 >"$log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  local port=""
  for _ in $(seq 50); do
    port="$(sed -n 's/^listening on [a-z]*:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")"
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "run.sh: $1 did not start: $(cat "$log")" >&2; exit 1; }
  if [ "$1" = tcp ]; then TARGET=(--tcp "127.0.0.1:$port"); else TARGET=(--ws "ws://127.0.0.1:$port/echo"); fi
}

: >"$OUT"
for server in lua tt tcp; do
  echo "== $server" >&2
  start_server "$server"
  for size in 16 1024 65536; do
    for conns in 1 64; do
      for window in 1 16; do
        for _ in 1 2; do
          "${LOADGEN[@]}" echo "${TARGET[@]}" --conns "$conns" --window "$window" --size "$size" \
            --seconds "$CELL_SECONDS" --pid "$SERVER_PID" --label "$server" | tee -a "$OUT" >&2
        done
      done
    done
  done
  if [ "$server" != tcp ]; then
    for _ in 1 2; do
      "${LOADGEN[@]}" storm "${TARGET[@]}" --count 2000 --concurrency 32 --pid "$SERVER_PID" --label "$server" | tee -a "$OUT" >&2
    done
  fi
  stop_server
  for _ in 1 2; do # memory on a fresh server each time
    start_server "$server"
    "${LOADGEN[@]}" idle "${TARGET[@]}" --count 10000 --pid "$SERVER_PID" --label "$server" | tee -a "$OUT" >&2
    stop_server
  done
done

python3 benches/report.py "$OUT"
