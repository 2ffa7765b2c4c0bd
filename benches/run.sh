#!/usr/bin/env bash
# The benchmark: the same load, in one run, against the echo servers of benches/lib.sh
# (by default lua, tt, tcp, node and py; the Lua peers resty and luahttp, and the lua-gen
# and luajit rows, are compared in benches/lua_peers.sh).
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
source benches/lib.sh
build_modules lua5.4
case " $SERVERS " in *" luajit "*) build_modules luajit ;; esac
case " $SERVERS " in *" resty "* | *" luahttp "*) bash benches/setup.sh ;; esac
case " $SERVERS " in *" node "*) need_node_ws ;;
esac
case " $SERVERS " in *" py "*)
  if ! build/venv/bin/python -c 'import websockets' 2>/dev/null; then
    python3 -m venv build/venv && build/venv/bin/pip install -q --disable-pip-version-check "websockets>=13" >&2
  fi ;;
esac
pin_and_trap

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
