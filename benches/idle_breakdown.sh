#!/usr/bin/env bash
# Where an idle connection's bytes go (issue 25): the Lua 5.4 echo server of the README
# (examples/handlers) runs under heaptrack; loadgen opens N idle ws:// connections
# (default 5,000) and holds them 1 s; heaptrack's allocations at the peak (all N open) are
# grouped by what made them (benches/idle_breakdown.py) and divided by N. Also prints the
# server's RSS growth per connection without heaptrack, for comparison.
#   bash benches/idle_breakdown.sh [N]      (STACKS=20 also prints the 20 biggest call stacks;
#                                             TLS=1 measures wss:// with a self-signed certificate)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5000}"
command -v heaptrack >/dev/null || { echo "idle_breakdown.sh: needs heaptrack (apt-get install heaptrack)" >&2; exit 1; }
cargo build --release --quiet -p ws-bench
ROOT="$(scripts/build.sh lua5.4)"
source benches/lib.sh
pin_and_trap
DIR="$(mktemp -d)"
SCHEME=ws TLS_OPTION=""
if [ "${TLS:-0}" = 1 ]; then
  make_cert "$DIR"
  SCHEME=wss TLS_OPTION="tls = { cert = \"$CERT\", key = \"$KEY\" },"
fi
SERVER='package.path = "examples/?.lua;" .. package.path
  local ws = require("service_utils.WS.web_socket")
  local server = ws.server({ handler_base = "handlers", '"$TLS_OPTION"' max_connections = '"$N"' + 100 })
  print(("listening on ws://127.0.0.1:%d"):format(server.port)); io.stdout:flush()
  server:run()'

# heaptrack_run COUNT NAME: the server under heaptrack with COUNT idle connections held
# 1 s; the stacks at its peak in $DIR/NAME.txt.
heaptrack_run() {
  LUA_CPATH="$ROOT/?.so;;" heaptrack -o "$DIR/$2" lua5.4 -e "$SERVER" >"$DIR/$2.log" 2>&1 &
  PID=$!
  local port server_pid
  port="$(port_of "$DIR/$2.log" "server under heaptrack")"
  server_pid="$(pgrep -P "$PID" -f "lua5.4 -e" | head -1)"
  if [ "$1" -gt 0 ]; then
    "${LOADGEN[@]}" idle --ws "$SCHEME://127.0.0.1:$port/echo" --count "$1" --label heaptrack >/dev/null
  else
    sleep 1
  fi
  kill "$server_pid"
  wait "$PID" || true
  PID=""
  heaptrack_print -f "$DIR/$2".*zst --flamegraph-cost-type peak -F "$DIR/$2.txt" >/dev/null
}
heaptrack_run 0 baseline
heaptrack_run "$N" loaded
RESULT=benches/results/idle_breakdown.txt
[ "$SCHEME" = wss ] && RESULT=benches/results/idle_breakdown-wss.txt
build/venv/bin/python benches/idle_breakdown.py "$DIR/baseline.txt" "$DIR/loaded.txt" "$N" ${STACKS:-} | tee "$RESULT"

LUA_CPATH="$ROOT/?.so;;" "${ON_SERVER_CPU[@]}" lua5.4 -e "$SERVER" >"$DIR/plain.log" 2>&1 &
PID=$!
PORT="$(port_of "$DIR/plain.log" server)"
"${LOADGEN[@]}" idle --ws "$SCHEME://127.0.0.1:$PORT/echo" --count "$N" --pid "$PID" --label rss \
  | tee -a "$RESULT"
rm -rf "$DIR"
