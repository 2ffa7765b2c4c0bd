#!/usr/bin/env bash
# Soak test (not part of scripts/test.sh): holds N concurrent connections (default 10,000)
# on the example server and reports the server's memory per connection, then checks the
# server still echoes.
#   bash benches/soak.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
cargo build --release --quiet -p ws-bench
ROOT="$(scripts/build.sh lua5.4)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
LOG=benches/results/soak.stdout
LUA_CPATH="$ROOT/?.so;;" lua5.4 -e "
  package.path = 'examples/?.lua;' .. package.path
  local ws = require('service_utils.WS.web_socket')
  local server = ws.server({ handler_base = 'handlers', max_connections = $N + 100 })
  print(('listening on ws://127.0.0.1:%d'):format(server.port)); io.stdout:flush()
  server:run()" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$LOG" && break; sleep 0.1; done
PORT="$(sed -n 's/^listening on ws:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$LOG")"
target/release/loadgen idle --ws "ws://127.0.0.1:$PORT/echo" --count "$N" --pid "$PID" --label soak
target/release/loadgen echo --ws "ws://127.0.0.1:$PORT/echo" --conns 64 --window 4 --size 1024 --seconds 2 --pid "$PID" --label soak-after
