#!/usr/bin/env bash
# Builds the module for one Lua version and lays it out as a cpath root:
#   build/<lua>/service_utils/WS/web_socket.so   (+ ws_const.so, ws_util.so linking to it)
# Usage: scripts/build.sh [lua5.4|lua5.3|lua5.1|luajit|/path/to/lua]   (default lua5.4).
# Prints the cpath root.
set -euo pipefail
cd "$(dirname "$0")/.."
LUA="${1:-lua5.4}"
case "$LUA" in */*) LUA="$("$LUA" -e 'io.write(rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:gsub("Lua ", ""))')" ;; esac
case "$LUA" in
  lua5.4) FEATURES=lua54 ;;
  lua5.3) FEATURES=lua53 ;;
  lua5.1) FEATURES=lua51 ;;
  luajit) FEATURES=luajit ;;
  *) echo "build.sh: unknown Lua '$LUA' (lua5.4, lua5.3, lua5.1 or luajit)" >&2; exit 2 ;;
esac
command -v cargo >/dev/null || { echo "build.sh: cargo not found: install Rust (rustup)" >&2; exit 1; }
cargo build --release --quiet --no-default-features --features "$FEATURES" >&2
ROOT="build/$LUA"
DEST="$ROOT/service_utils/WS"
mkdir -p "$DEST"
# Copy (not link) target's file: the next build for another Lua version overwrites it.
cp -f target/release/libservice_utils_ws.so "$DEST/web_socket.so.new"
mv -f "$DEST/web_socket.so.new" "$DEST/web_socket.so"
ln -sf web_socket.so "$DEST/ws_const.so"
ln -sf web_socket.so "$DEST/ws_util.so"
echo "$ROOT"
