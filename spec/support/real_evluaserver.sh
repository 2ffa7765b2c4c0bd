#!/usr/bin/env bash
# Runs the evluaserver-runtime cases inside the real evluaserver of the kit:
#   spec/support/real_evluaserver.sh KIT CPATH_ROOT OUT CACHE THREADS
# KIT is ../shared/tools/evluaserver (see its README), CPATH_ROOT the Lua 5.3 build
# (build/lua5.3), OUT a fresh directory for the results; CACHE true|false is
# enableluafilecache, THREADS the number of worker threads. Writes OUT/cases-all.txt and
# OUT/cases-message.txt (spec/support/conformance_cases.py against spec/support/conformance_app,
# with handler classes defining every hook / handle_message only), OUT/load.txt
# (spec/support/evl_load.py: many, slowloris), OUT/kit.txt (the kit's own
# ws_client_test.py against its app) and OUT/idle.txt ("idle" when server.log did not
# grow in the second after the cases: no socket dispatched again and again). The server
# is stopped by its PID however this script ends.
set -uo pipefail
KIT=$1; ROOT=$2; OUT=$3; CACHE=$4; THREADS=$5
cd "$(dirname "$0")/../.."
PY=${WS_PYTHON:-build/venv/bin/python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# The kit's setup.sh can die of SIGPIPE under pipefail (ldconfig -p | awk ...exit):
# retried, bounded.
DEST=""
for _ in 1 2 3; do
  DEST=$(bash "$KIT/setup.sh" build/evluaserver 2>"$OUT/setup.err" | tail -n 1)
  [ -d "$DEST" ] && break
done
[ -d "$DEST" ] || { echo "setup.sh failed: $(cat "$OUT/setup.err")" >&2; exit 1; }
bash "$KIT/run.sh" install-module "$DEST" "$ROOT" >"$OUT/install.txt" || exit 1
APP="$OUT/app"
mkdir -p "$APP"
cp -r "$KIT/app/." "$APP/"
cp -r spec/support/conformance_app/. "$APP/"
chmod -R u+w "$APP"
PORT=$("$PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
RUN="$OUT/run"
trap 'bash "$KIT/run.sh" stop "$RUN" >/dev/null 2>&1' EXIT
# The kit's run.sh writes EVTCPServer.numConnections = 100, and evluaserver refuses the
# 101st connection: started once to lay out RUN, then again by hand (run.sh env) with
# room for the load cases' 200 connections.
bash "$KIT/run.sh" start "$DEST" "$APP" "$PORT" "$RUN" --cache "$CACHE" --threads "$THREADS" >"$OUT/start.txt" || exit 1
bash "$KIT/run.sh" stop "$RUN" >/dev/null
sed -i 's/^EVTCPServer.numConnections = .*/EVTCPServer.numConnections = 1000/' "$RUN/evluaserver.properties"
(
  while IFS= read -r var; do export "$var"; done < <(bash "$KIT/run.sh" env "$DEST" "$RUN")
  cd "$RUN" && exec "$DEST/bin/evluaserver" -n >"$RUN/server.log" 2>&1 </dev/null
) &
echo $! >"$RUN/evluaserver.pid"
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
for hooks in all message; do
  timeout 300 "$PY" spec/support/conformance_cases.py --port "$PORT" --log "$RUN/handler.log" --timeout 3 \
    --hooks "$hooks" >"$OUT/cases-$hooks.txt" 2>&1
done
timeout 300 "$PY" "$KIT/app/ws_client_test.py" --port "$PORT" --rundir "$RUN" --timeout 3 >"$OUT/kit.txt" 2>&1
# Load (docs/evluaserver.md has evluaserver's limits these stay within): 200 connections
# held open together, and echoes while another client crawls through its handshake.
{
  timeout 60 "$PY" spec/support/evl_load.py --port "$PORT" --path /ws_plain/echo --in-flight 20 many 200
  timeout 60 "$PY" spec/support/evl_load.py --port "$PORT" --path /ws_plain/echo slowloris 10 50 5
} >"$OUT/load.txt" 2>&1
before=$(stat -c %s "$RUN/server.log")
sleep 1
after=$(stat -c %s "$RUN/server.log")
if [ "$before" = "$after" ]; then echo idle >"$OUT/idle.txt"; else echo "server.log grew from $before to $after bytes in 1 s" >"$OUT/idle.txt"; fi
cp "$RUN/server.log" "$OUT/server.log"
