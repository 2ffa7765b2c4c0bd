#!/usr/bin/env bash
# Redis faults in numbers (issue 24, parts 2 and 3): one server process (Lua 5.4) with
# pubsub on a real redis-server publishes 1,500 x 64 KiB at once with Redis healthy and
# with Redis paused (SIGSTOP), then makes 400,000 subscribe/unsubscribe pairs with Redis
# up and paused (benches/lua/redis_faults.lua). Prints the server's RSS growth and what
# stats().pubsub counted per case, and what a redis-cli subscriber received.
#   bash benches/redis_faults.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis_faults.sh: needs redis-server (apt-get install redis-server)" >&2; exit 1; }
ROOT="$(scripts/build.sh lua5.4)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
OUT=benches/results
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis_faults-redis.log" 2>&1 &
REDIS=$!
SUB=""
trap 'kill -CONT $REDIS 2>/dev/null; kill $REDIS ${SUB:-} 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$PORT" subscribe ws:faults >"$OUT/redis_faults-sub.out" 2>&1 &
SUB=$!
LUA_CPATH="$ROOT/?.so;;" timeout 600 lua5.4 benches/lua/redis_faults.lua "$PORT" "$REDIS" | tee "$OUT/redis_faults.txt"
sleep 1
echo "a redis-cli subscriber received $(grep -c '^message$' "$OUT/redis_faults-sub.out") messages on ws:faults" | tee -a "$OUT/redis_faults.txt"
