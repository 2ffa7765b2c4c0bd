#!/usr/bin/env bash
# Installs what building and testing need on Debian 12, or says exactly what is missing.
#   scripts/setup.sh run    what the example server needs: Rust (cargo), lua5.4
#   scripts/setup.sh test   also lua5.3, lua5.1, luajit, busted, luasocket, luarocks,
#                           redis-server, tinyproxy, dante-server, luacheck, cargo
#                           clippy, a Python venv with
#                           websockets, Node's ws
# apt packages are installed when running as root; otherwise the missing ones are named.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT="${1:-test}"

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || {
  echo "setup.sh: cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
}

# Building: gcc and pkg-config for the native parts, OpenSSL (wss) and zlib (compression).
need=(lua5.4 gcc pkg-config libssl-dev zlib1g-dev)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# The LuaJIT interpreter: Debian's luajit, or OpenResty's luajit2 where nginx's Lua module
# (the benchmark's lua-resty-websocket peer) has brought its library: the two conflict,
# and installing libnginx-mod-http-lua removes luajit.
LUAJIT=luajit
if installed luajit2 || installed libluajit2-5.1-2; then LUAJIT=luajit2; fi
if [ "$WHAT" = test ]; then
  need+=(lua5.3 lua5.1 "$LUAJIT" lua-busted lua-socket luarocks liblua5.4-dev liblua5.3-dev liblua5.1-0-dev
    redis-server lua-check tinyproxy dante-server
    neovim lua-luv lua-cqueues lua-http lua-copas) # the hosts of spec/hosts_spec.lua
fi
missing=()
for p in "${need[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ "$WHAT" = test ]; then
  # Commands that may come from elsewhere than Debian (Node from NodeSource, say).
  command -v openssl >/dev/null || missing+=(openssl)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "setup.sh: missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

if [ "$WHAT" = test ]; then
  # The lint check of the test command.
  if ! cargo clippy --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      rustup component add clippy >&2
    else
      echo "setup.sh: cargo clippy is missing: install the clippy component of your Rust toolchain" >&2
      exit 1
    fi
  fi
  # The independent peer of the interop specs: Python's websockets, in a venv of our own.
  if [ ! -x build/venv/bin/python ] || ! build/venv/bin/python -c 'import websockets' 2>/dev/null; then
    if ! python3 -m venv build/venv >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq python3-venv >&2
        python3 -m venv build/venv
      else
        echo "setup.sh: python3 cannot make a venv: install python3-venv" >&2
        exit 1
      fi
    fi
    build/venv/bin/pip install -q --disable-pip-version-check "websockets>=13" >&2
  fi
  # The other independent peers: Node's ws, and Chromium driven by playwright-core.
  if [ ! -d build/node/node_modules/ws ] || [ ! -d build/node/node_modules/playwright-core ]; then
    npm install --silent --no-audit --no-fund --prefix build/node ws@8 playwright-core@1 >&2
  fi
  # The browser spec is skipped, saying why, where Chromium cannot be installed.
  if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq chromium >&2 || echo "setup.sh: could not install chromium: the browser spec will be skipped" >&2
  fi
fi
