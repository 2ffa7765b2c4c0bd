#!/usr/bin/env bash
# Memory per idle connection inside the real evluaserver (issue 25), with the shared kit
# (../shared/tools/evluaserver; skipped, saying so, without it): the kit's app, N idle
# connections (default 10,000) to its echo handler (ws/echo.lua, written to the original
# module's conventions).
#   1. evluaserver's RSS growth per connection (its socket and Lua plus our entry);
#   2. heaptrack at the peak, less the same server with none, split into this module's
#      part (the registry entry, the Lua objects its bindings make) and evluaserver's.
# The report goes to benches/results/evluaserver_idle.txt.
#   bash benches/evluaserver_idle.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
KIT=../shared/tools/evluaserver
[ -f "$KIT/evluaserver.tar.xz" ] || { echo "evluaserver_idle.sh: skipped: the evluaserver kit ($KIT) is not here"; exit 0; }
command -v heaptrack >/dev/null || { echo "evluaserver_idle.sh: needs heaptrack (apt-get install heaptrack)" >&2; exit 1; }
cargo build --release --quiet -p ws-bench
source benches/lib.sh
pin_and_trap
DEST="$(bash "$KIT/setup.sh" build/evluaserver | tail -1)"
bash "$KIT/run.sh" install-module "$DEST" "$(scripts/build.sh lua5.3 | tail -1)" >/dev/null
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RUN="$(mktemp -d)"
OUT=benches/results/evluaserver_idle.txt
cleanup() { bash "$KIT/run.sh" stop "$RUN" >/dev/null 2>&1 || true; stop_pid; rm -rf "$RUN"; }
trap cleanup EXIT

# 1. RSS, as started by the kit.
PORT="$(free_port)"
bash "$KIT/run.sh" start "$DEST" "$KIT/app" "$PORT" "$RUN" >/dev/null
"${LOADGEN[@]}" idle --ws "ws://127.0.0.1:$PORT/ws/echo" --count "$N" --pid "$(cat "$RUN/evluaserver.pid")" \
  --label evluaserver | tee "$OUT"
bash "$KIT/run.sh" stop "$RUN" >/dev/null

# 2. heaptrack: the same start by hand (the kit's environment), with N and with no
# connections; the stacks at the peak.
heaptrack_run() {
  local port log="$RUN/heaptrack-$2.log"
  port="$(free_port)"
  bash "$KIT/run.sh" start "$DEST" "$KIT/app" "$port" "$RUN" >/dev/null
  bash "$KIT/run.sh" stop "$RUN" >/dev/null  # leaves RUNDIR's properties for this port
  (
    while IFS= read -r setting; do export "${setting?}"; done < <(bash "$KIT/run.sh" env "$DEST" "$RUN")
    cd "$RUN"
    exec heaptrack -o "$RUN/$2" "$DEST/bin/evluaserver" -n
  ) >"$log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  if [ "$1" -gt 0 ]; then
    "${LOADGEN[@]}" idle --ws "ws://127.0.0.1:$port/ws/echo" --count "$1" --label heaptrack >/dev/null
  else
    sleep 1
  fi
  kill "$(pgrep -P "$PID" | head -1 || echo "$PID")" 2>/dev/null || true
  wait "$PID" || true
  PID=""
  heaptrack_print -f "$RUN/$2".*zst --flamegraph-cost-type peak -F "$RUN/$2.txt" >/dev/null
}
heaptrack_run 0 baseline
heaptrack_run "$N" loaded
build/venv/bin/python benches/idle_breakdown.py --evluaserver "$RUN/baseline.txt" "$RUN/loaded.txt" "$N" ${STACKS:-} | tee -a "$OUT"
