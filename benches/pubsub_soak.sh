#!/usr/bin/env bash
# Soak of the scale-out under faults (issue 24): two servers with 2 workers each on one
# real redis-server, publishing across them for SECONDS (default 600) while a worker is
# killed (SIGKILL) every minute and Redis is restarted twice. Reports messages published,
# delivered, missed while Redis was down, lost without a count, and each process's RSS at
# start and end (benches/pubsub_soak.py has the accounting).
#   bash benches/pubsub_soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "pubsub_soak.sh: needs redis-server (apt-get install redis-server)" >&2; exit 1; }
[ -x build/venv/bin/python ] || { echo "pubsub_soak.sh: needs build/venv (bash scripts/setup.sh test)" >&2; exit 1; }
ROOT="$(scripts/build.sh lua5.4)"
build/venv/bin/python benches/pubsub_soak.py "$ROOT" "${1:-600}" | tee benches/results/pubsub_soak.txt
