#!/usr/bin/env bash
# Installs what the benchmark's Lua peers need on Debian 12 (as root; otherwise names what
# is missing):
#   resty    nginx-light + libnginx-mod-http-lua + lua-resty-core, and lua-resty-websocket
#            from Debian's lua-nginx-websocket (its files unpacked into build/peers/resty/lua:
#            the package itself depends on nginx-extras, which is not needed)
#   luahttp  lua-http 0.4 and lua-cqueues (Lua 5.1)
#   luajit   the module's LuaJIT row runs on the LuaJIT the test command uses
# libnginx-mod-http-lua brings OpenResty's libluajit2, which conflicts with Debian's
# luajit: luajit2 (the same branch's interpreter, /usr/bin/luajit) is installed with it,
# so the test command keeps a working `luajit` (scripts/setup.sh picks luajit2 from then on).
set -euo pipefail
cd "$(dirname "$0")/.."
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
need=(nginx-light libnginx-mod-http-lua lua-resty-core lua5.1 lua-http lua-cqueues luajit2)
missing=()
for p in "${need[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "benches/setup.sh: missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "benches/setup.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # Installed together, so that luajit2 replaces luajit in the same step and /usr/bin/luajit
  # is never missing for long.
  apt-get install -y -qq "${missing[@]}" >&2
fi
command -v luajit >/dev/null || { echo "benches/setup.sh: no luajit after installing luajit2" >&2; exit 1; }
LIB=build/peers/resty/lua
if [ ! -f "$LIB/nginx/websocket/server.lua" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download lua-nginx-websocket >/dev/null 2>&1) || {
    rm -rf "$tmp"; echo "benches/setup.sh: cannot download Debian's lua-nginx-websocket (apt-get update first?)" >&2; exit 1; }
  dpkg-deb -x "$tmp"/lua-nginx-websocket_*.deb "$tmp/x"
  mkdir -p "$LIB" build/peers/resty/doc
  cp -r "$tmp/x/usr/share/lua/5.1/nginx" "$LIB/"
  cp "$tmp/x/usr/share/doc/lua-nginx-websocket/copyright" build/peers/resty/doc/
  rm -rf "$tmp"
fi
