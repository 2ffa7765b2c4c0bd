#!/usr/bin/env bash
# Memory per idle connection inside the real evluaserver (issue 25), with the shared kit
# (../shared/tools/evluaserver; skipped, saying so, without it): the kit's app, N idle
# connections (default 5,000) to its echo handler (ws/echo.lua, written to the original
# module's conventions):
# evluaserver's RSS growth per connection (its socket and Lua plus our registry entry).
# (Splitting it with heaptrack, as benches/idle_breakdown.sh does, is not done: under
# heaptrack the kit's server accepted fewer than 100 connections in two minutes.)
# The report goes to benches/results/evluaserver_idle.txt.
#   bash benches/evluaserver_idle.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5000}"
KIT=../shared/tools/evluaserver
[ -f "$KIT/evluaserver.tar.xz" ] || { echo "evluaserver_idle.sh: skipped: the evluaserver kit ($KIT) is not here"; exit 0; }
cargo build --release --quiet -p ws-bench
source benches/lib.sh
pin_and_trap
bash "$KIT/setup.sh" build/evluaserver >/dev/null
DEST="$(cd build/evluaserver && pwd)"
bash "$KIT/run.sh" install-module "$DEST" "$(scripts/build.sh lua5.3 | tail -1)" >/dev/null
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RUN="$(mktemp -d)"
OUT=benches/results/evluaserver_idle.txt
cleanup() { [ -n "${PID:-}" ] && stop_by_hand; rm -rf "$RUN"; }
trap cleanup EXIT

# start_by_hand PORT: the kit's start (which writes RUNDIR), stopped, then the same
# server started by hand in the kit's environment with room for N connections (the kit's
# properties allow 100). Sets PID.
start_by_hand() {
  bash "$KIT/run.sh" start "$DEST" "$KIT/app" "$1" "$RUN" >/dev/null
  bash "$KIT/run.sh" stop "$RUN" >/dev/null
  sed -i "s/^EVTCPServer.numConnections = .*/EVTCPServer.numConnections = $((N + 100))/" "$RUN/evluaserver.properties"
  (
    while IFS= read -r setting; do export "${setting?}"; done < <(bash "$KIT/run.sh" env "$DEST" "$RUN")
    cd "$RUN"
    exec "$DEST/bin/evluaserver" -n
  ) >"$RUN/by-hand.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && break; sleep 0.1; done
}

# stop_by_hand: TERM, then KILL after 5 s (as the kit's stop), and the wait.
stop_by_hand() {
  kill "$PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" || true
  PID=""
}

PORT="$(free_port)"
start_by_hand "$PORT"
"${LOADGEN[@]}" idle --ws "ws://127.0.0.1:$PORT/ws/echo" --count "$N" --pid "$PID" --label evluaserver | tee "$OUT"
stop_by_hand

