#!/usr/bin/env bash
# The benchmark: the same load, in one run, against these echo servers
#   lua   this module, examples/server.lua (a Lua echo handler at /echo)
#   tt    pure-Rust tokio-tungstenite echo (the ceiling of this stack)  benches/src/bin/tt_echo.rs
#   tcp   raw TCP echo (the floor of the machine)                       benches/src/bin/tcp_echo.rs
#   node  Node's ws 8 (what a user might pick instead)                   benches/peers/ws_echo.js
#   py    Python's websockets (likewise)                                 benches/peers/websockets_echo.py
# Each server runs on CPU 0 and the load generator on CPU 1 (taskset, when there are two).
# Echo cells, each run twice, per size (16 B, 1 KiB, 64 KiB):
#   pipelined 64 x 16 and 1 x 16  (the load generator batches its frames: not the bottleneck)
#   one frame per write: 64 x 16, and the window-1 cells 64 x 1 and 1 x 1
# plus a 10,000-connection handshake storm and 10,000 idle connections for memory, and
# the compressed cells of benches/deflate.py (lua, node, py with permessage-deflate).
# Node's ws and Python's websockets are installed into build/ when missing.
#
#   bash benches/run.sh            prints the table, writes benches/results/latest.jsonl
#   CELL_SECONDS=5 bash benches/run.sh
#   SERVERS="lua tt" bash benches/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CELL_SECONDS="${CELL_SECONDS:-3}"
OUT=benches/results/latest.jsonl

SERVERS="${SERVERS:-lua tt tcp node py}"

cargo build --release --quiet -p ws-bench
ROOT="$(scripts/build.sh lua5.4)"
case " $SERVERS " in *" node "*)
  command -v node >/dev/null || { echo "run.sh: node is missing (apt-get install nodejs npm), or leave it out: SERVERS=\"lua tt tcp py\"" >&2; exit 1; }
  [ -d build/node/node_modules/ws ] || npm install --silent --no-audit --no-fund --prefix build/node ws@8 >&2 ;;
esac
case " $SERVERS " in *" py "*)
  if ! build/venv/bin/python -c 'import websockets' 2>/dev/null; then
    python3 -m venv build/venv && build/venv/bin/pip install -q --disable-pip-version-check "websockets>=13" >&2
  fi ;;
esac
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$(nproc)" -ge 2 ] && taskset -c 0 true 2>/dev/null; then
  ON_SERVER_CPU=(taskset -c 0); ON_LOAD_CPU=(taskset -c 1)
else
  ON_SERVER_CPU=(); ON_LOAD_CPU=()
fi
LOADGEN=("${ON_LOAD_CPU[@]}" target/release/loadgen)

source benches/lib.sh
PID=""
trap stop_pid EXIT

# start_server NAME: starts it on an ephemeral port; sets PID and TARGET (loadgen args).
start_server() {
  local log="benches/results/$1.stdout"
  case "$1" in
    lua) LUA_CPATH="$ROOT/?.so;;" "${ON_SERVER_CPU[@]}" lua5.4 examples/server.lua 0 >"$log" 2>&1 & ;;
    tt) "${ON_SERVER_CPU[@]}" target/release/tt_echo 0 >"$log" 2>&1 & ;;
    tcp) "${ON_SERVER_CPU[@]}" target/release/tcp_echo 0 >"$log" 2>&1 & ;;
    node) NODE_PATH=build/node/node_modules "${ON_SERVER_CPU[@]}" node benches/peers/ws_echo.js >"$log" 2>&1 & ;;
    py) "${ON_SERVER_CPU[@]}" build/venv/bin/python benches/peers/websockets_echo.py >"$log" 2>&1 & ;;
  esac
  PID=$!
  local port
  port="$(port_of "$log" "$1")" || exit 1
  if [ "$1" = tcp ]; then TARGET=(--tcp "127.0.0.1:$port"); else TARGET=(--ws "ws://127.0.0.1:$port/echo"); fi
}

: >"$OUT"
# echo_cell CONNS WINDOW SIZE REGIME: one cell, twice.
echo_cell() {
  for _ in 1 2; do
    "${LOADGEN[@]}" echo "${TARGET[@]}" --conns "$1" --window "$2" --size "$3" --regime "$4" \
      --seconds "$CELL_SECONDS" --pid "$PID" --label "$server" | tee -a "$OUT" >&2
  done
}
for server in $SERVERS; do
  echo "== $server" >&2
  start_server "$server"
  for size in 16 1024 65536; do
    echo_cell 64 16 "$size" pipelined
    echo_cell 1 16 "$size" pipelined
    echo_cell 64 16 "$size" one
    echo_cell 64 1 "$size" one
    echo_cell 1 1 "$size" one
  done
  if [ "$server" != tcp ]; then
    for _ in 1 2; do
      "${LOADGEN[@]}" storm "${TARGET[@]}" --count 10000 --concurrency 32 --pid "$PID" --label "$server" | tee -a "$OUT" >&2
    done
  fi
  stop_pid
  for _ in 1 2; do # memory on a fresh server each time
    start_server "$server"
    "${LOADGEN[@]}" idle "${TARGET[@]}" --count 10000 --pid "$PID" --label "$server" | tee -a "$OUT" >&2
    stop_pid
  done
done

python3 benches/report.py "$OUT"

# permessage-deflate: this module, Node's ws and Python's websockets with compression on
# (benches/deflate.py; JSON lines in benches/results/deflate.jsonl). DEFLATE=0 skips it.
DEFLATE_SERVERS="$(for s in $SERVERS; do case $s in lua|node|py) printf '%s,' "$s" ;; esac; done)"
if [ "${DEFLATE:-1}" != 0 ] && [ -n "$DEFLATE_SERVERS" ]; then
  echo "== permessage-deflate" >&2
  build/venv/bin/python benches/deflate.py --seconds "$CELL_SECONDS" --servers "${DEFLATE_SERVERS%,}"
fi
