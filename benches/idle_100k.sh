#!/usr/bin/env bash
# 100,000 idle ws:// connections held on this machine, pinged, then one publish to all of
# them (issue 25): benches/idle_100k.py drives it; the report goes to
# benches/results/idle_100k.txt. Server workers on CPU 0, the load generators on CPU 1.
#   bash benches/idle_100k.sh [CONNECTIONS [LOADGENS [WORKERS [PING_INTERVAL [ENDPOINT]]]]]
#   (defaults 100000, 6, 7, 15, all: about 16,700 connections per loadgen, 14,300 per
#   worker, under the 20,000 descriptors a process may hold here; ENDPOINT "echo" holds
#   the connections without subscriptions, and the publish then reaches nobody);
#   TLS=1 runs it over wss:// (a self-signed certificate)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p ws-bench
source benches/lib.sh
build_modules lua5.4
if ! build/venv/bin/python -c 'import websockets' 2>/dev/null; then
  python3 -m venv build/venv && build/venv/bin/pip install -q --disable-pip-version-check "websockets>=13" >&2
fi
server_cpu="" load_cpu=""
if [ "$(nproc)" -ge 2 ] && taskset -c 0 true 2>/dev/null; then server_cpu=0 load_cpu=1; fi
ENDPOINT="${5:-all}"
TLS_ARGS=() RESULT="benches/results/idle_100k-$ENDPOINT.txt"
if [ "${TLS:-0}" = 1 ]; then
  CERT_DIR="$(mktemp -d)"
  trap 'rm -rf "$CERT_DIR"' EXIT
  make_cert "$CERT_DIR"
  TLS_ARGS=("$CERT" "$KEY") RESULT="benches/results/idle_100k-$ENDPOINT-wss.txt"
fi
build/venv/bin/python benches/idle_100k.py "${1:-100000}" "${2:-6}" "${3:-7}" "${4:-15}" \
  "build/lua5.4/?.so;;" "$server_cpu" "$load_cpu" "$ENDPOINT" "${TLS_ARGS[@]}" | tee "$RESULT"
