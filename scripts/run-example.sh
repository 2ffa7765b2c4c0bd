#!/usr/bin/env bash
# Builds the module for Lua 5.4 and runs the example server (echo at /echo, chat at /chat).
#   scripts/run-example.sh [PORT]     PORT defaults to 8080; 0 picks a free one
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
ROOT="$(scripts/build.sh lua5.4)"
LUA_CPATH="$ROOT/?.so;;" exec lua5.4 examples/server.lua "$@"
