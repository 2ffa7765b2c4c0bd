#!/usr/bin/env bash
# Memory per idle connection, side by side in one run (issue 25): each server fresh,
# loadgen opens N idle connections (default 10,000) to its echo endpoint and holds them 1 s;
# the server's RSS growth divided by N. Twice per server; the table is printed and the
# JSON lines kept in benches/results/idle.jsonl.
#   lua       this module, Lua 5.4, the README's echo handler (ws://)
#   lua-wss   the same over TLS (benches/lua/idle_server.lua, a self-signed certificate)
#   tt        tokio-tungstenite echo (benches/src/bin/tt_echo.rs)
#   node      Node's ws 8;  node-wss  the same on an https server
#   uws       uWebSockets (C++), built from ../shared/tools/uws when it exists (else
#             skipped, saying so)
#   bash benches/idle.sh [N]        SERVERS="lua uws" bash benches/idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
OUT=benches/results/idle.jsonl
SERVERS="${SERVERS:-lua lua-wss tt node node-wss uws}"

cargo build --release --quiet -p ws-bench
source benches/lib.sh
build_modules lua5.4
case " $SERVERS " in *" node"*) need_node_ws ;;
esac
case " $SERVERS " in *" uws "*)
  if [ -d ../shared/tools/uws ]; then
    UWS="$(bash ../shared/tools/uws/build.sh build/uws | tail -1)"
  else
    echo "idle.sh: skipping uws: ../shared/tools/uws (the uWebSockets kit) is not here" >&2
    SERVERS="$(echo " $SERVERS " | sed 's/ uws / /')"
  fi ;;
esac
pin_and_trap
CERT_DIR="$(mktemp -d)"
make_cert "$CERT_DIR"

: >"$OUT"
for server in $SERVERS; do
  for _ in 1 2; do
    start_server "$server"
    "${LOADGEN[@]}" idle "${TARGET[@]}" --count "$N" --pid "$PID" --label "$server" | tee -a "$OUT" >&2
    stop_pid
  done
done
rm -rf "$CERT_DIR"

python3 - "$OUT" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["label"], []).append(r)
print(f"| server | connections | KiB per idle connection (each run) | mean |")
print("|---|---|---|---|")
for label, runs in rows.items():
    kib = [r["server_kib_per_conn"] for r in runs if r["server_kib_per_conn"] is not None]
    opened = min(r["open"] for r in runs)
    mean = sum(kib) / len(kib) if kib else float("nan")
    print(f"| {label} | {opened:,} | {' / '.join(f'{k:.2f}' for k in kib)} | **{mean:.2f}** |")
PY
