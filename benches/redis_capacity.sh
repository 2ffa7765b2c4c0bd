#!/usr/bin/env bash
# How much one Redis carries for the pubsub bridge, and how much one server sends to it
# (issue 24's arithmetic in docs/topics.md). Redis on CPU 0, everything else on CPU 1:
#  1. redis-benchmark PUBLISHes 1 KiB messages (8 connections, 16 pipelined) to a channel
#     with k = 0, 1, 4, 16 subscribers (benches/redis_sink.py: raw sockets that discard);
#     the same with SPUBLISH / SSUBSCRIBE on a one-master cluster. Prints messages/s,
#     deliveries/s and Redis's busy share (its CPU seconds / wall seconds).
#  2. One server (Lua 5.4, CPU 1) publishes 1 KiB messages through its bridge for 5 s
#     (benches/lua/redis_publisher.lua) with one sink subscribed: messages/s sent and the
#     server's busy share.
#   bash benches/redis_capacity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-benchmark >/dev/null || { echo "redis_capacity.sh: needs redis-server and redis-tools" >&2; exit 1; }
ROOT="$(scripts/build.sh lua5.4)"
PY=build/venv/bin/python
OUT=benches/results/redis_capacity.txt
DIR="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
PAYLOAD="$(head -c 1024 /dev/zero | tr '\0' x)"

start_redis() { # port [cluster]
  local extra=()
  [ "${2:-}" = cluster ] && extra=(--cluster-enabled yes --cluster-config-file "nodes-$1.conf")
  taskset -c 0 redis-server --port "$1" --bind 127.0.0.1 --dir "$DIR" --save "" --appendonly no \
    "${extra[@]}" >"$DIR/redis-$1.log" 2>&1 &
  PIDS+=($!)
  REDIS=$!
  for _ in $(seq 50); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server did not start" >&2; exit 1
}

# label port command channel subscribe-command
measure() {
  local label=$1 port=$2 cmd=$3 channel=$4 sub=$5 sinks=()
  for k in 0 1 4 16; do
    while [ "${#sinks[@]}" -lt "$k" ]; do
      taskset -c 1 "$PY" benches/redis_sink.py "$port" "$channel" "$sub" & sinks+=($!); PIDS+=($!)
    done
    sleep 0.3
    local t0 c0 t1 c1 rate
    t0=$(date +%s.%N); c0=$(cpu_ticks "$REDIS")
    rate=$(taskset -c 1 redis-benchmark -p "$port" -c 8 -P 16 -n 200000 -q "$cmd" "$channel" "$PAYLOAD" \
      | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
    t1=$(date +%s.%N); c1=$(cpu_ticks "$REDIS")
    awk -v l="$label" -v k="$k" -v r="$rate" -v c="$((c1 - c0))" -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" \
      'BEGIN { printf "%-10s %2d subscribers: %9.0f messages/s, %9.0f deliveries/s, Redis busy %.2f\n", l, k, r, r * k, c / 100 / w }' \
      | tee -a "$OUT"
  done
  for p in "${sinks[@]}"; do kill "$p"; done
}

: >"$OUT"
P1=$(free_port); start_redis "$P1"
measure PUBLISH "$P1" PUBLISH ws:cap SUBSCRIBE
P2=$(free_port); start_redis "$P2" cluster
redis-cli -p "$P2" cluster addslotsrange 0 16383 >/dev/null
for _ in $(seq 50); do redis-cli -p "$P2" cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
measure SPUBLISH "$P2" SPUBLISH ws:cap SSUBSCRIBE

taskset -c 1 "$PY" benches/redis_sink.py "$P1" ws:cap & PIDS+=($!)
LUA_CPATH="$ROOT/?.so;;" taskset -c 1 lua5.4 benches/lua/redis_publisher.lua "$P1" 5 1024 >"$DIR/pub.out" &
PUB=$!; PIDS+=($PUB)
wait "$PUB" || true
read -r _ sent _ dropped _ secs _ _ _ cpu _ < <(tr -d ';' <"$DIR/pub.out")
awk -v n="$sent" -v d="$dropped" -v s="$secs" -v c="$cpu" \
  'BEGIN { printf "one server publishing through its bridge: %.0f messages/s sent, %d dropped, server busy %.2f\n", n / s, d, c / s }' \
  | tee -a "$OUT"
