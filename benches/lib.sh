# benches/lib.sh: what the benchmark scripts share (sourced by run.sh, lua_peers.sh,
# fanout.sh, workers.sh).

# port_of LOG NAME: the port a server printed in LOG ("listening on ws://127.0.0.1:PORT"),
# waiting up to 5 s; exits saying so when it did not start.
port_of() {
  local port=""
  for _ in $(seq 50); do
    port="$(sed -n 's/^listening on [a-z]*:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$1")"
    [ -n "$port" ] && { echo "$port"; return; }
    sleep 0.1
  done
  echo "$(basename "$0"): $2 did not start: $(cat "$1")" >&2
  exit 1
}

# pin_and_trap: room for many descriptors; the server on CPU 0 and the load generator on
# CPU 1 where there are two (sets ON_SERVER_CPU, ON_LOAD_CPU and LOADGEN); the server in
# $PID stopped however the script ends.
pin_and_trap() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  if [ "$(nproc)" -ge 2 ] && taskset -c 0 true 2>/dev/null; then
    ON_SERVER_CPU=(taskset -c 0); ON_LOAD_CPU=(taskset -c 1)
  else
    ON_SERVER_CPU=(); ON_LOAD_CPU=()
  fi
  LOADGEN=("${ON_LOAD_CPU[@]}" target/release/loadgen)
  PID=""
  trap stop_pid EXIT
}

# stop_pid: stops the server in $PID, if any, and waits for it.
stop_pid() {
  if [ -n "${PID:-}" ]; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
  fi
}

# The echo servers the benchmarks start (each prints "listening on ws://127.0.0.1:PORT"):
#   lua      this module on Lua 5.4, examples/server.lua (a Lua echo handler at /echo)
#   lua-gen  the same with Lua 5.4's generational GC (collectgarbage("generational"))
#   luajit   the same on LuaJIT
#   lua-luv  the same handlers driven by ws.step from a luv loop     examples/hosts/luv.lua
#   tt       pure-Rust tokio-tungstenite echo (the ceiling of this stack)  benches/src/bin/tt_echo.rs
#   tcp      raw TCP echo (the floor of the machine)                       benches/src/bin/tcp_echo.rs
#   node     Node's ws 8                                                    benches/peers/ws_echo.js
#   py       Python's websockets                                            benches/peers/websockets_echo.py
#   resty    lua-resty-websocket on nginx's Lua module, one worker          benches/peers/resty.sh
#   luahttp  lua-http 0.4 on cqueues (Lua 5.1)                              benches/peers/lua_http_echo.lua
#   lua-wss, node-wss  lua and node over TLS (needs $CERT and $KEY: make_cert)
#   uws      uWebSockets (C++), from ../shared/tools/uws when it exists ($UWS: its binary)
# The caller sets ON_SERVER_CPU (a taskset prefix, or empty) and runs build_modules
# first; resty and luahttp need benches/setup.sh.

# build_modules LUA...: builds the module for each Lua (scripts/build.sh) before any server
# starts: start_server then uses build/<lua> (a build switches cargo features, so it is not
# done between cells).
build_modules() {
  local lua
  for lua in "$@"; do scripts/build.sh "$lua" >/dev/null; done
}

# start_server NAME: starts it on an ephemeral port; sets PID and TARGET (loadgen args).
start_server() {
  local log="benches/results/$1.stdout" root=build/lua5.4
  [ "$1" = luajit ] && root=build/luajit
  case "$1" in
    lua) LUA_CPATH="$root/?.so;;" "${ON_SERVER_CPU[@]}" lua5.4 examples/server.lua 0 >"$log" 2>&1 & ;;
    lua-gen) LUA_CPATH="$root/?.so;;" "${ON_SERVER_CPU[@]}" lua5.4 -e 'collectgarbage("generational")' examples/server.lua 0 >"$log" 2>&1 & ;;
    luajit) LUA_CPATH="$root/?.so;;" "${ON_SERVER_CPU[@]}" luajit examples/server.lua 0 >"$log" 2>&1 & ;;
    lua-luv) LUA_CPATH="$root/?.so;;" "${ON_SERVER_CPU[@]}" lua5.4 examples/hosts/luv.lua 0 >"$log" 2>&1 & ;;
    tt) "${ON_SERVER_CPU[@]}" target/release/tt_echo 0 >"$log" 2>&1 & ;;
    tcp) "${ON_SERVER_CPU[@]}" target/release/tcp_echo 0 >"$log" 2>&1 & ;;
    node) NODE_PATH=build/node/node_modules "${ON_SERVER_CPU[@]}" node benches/peers/ws_echo.js >"$log" 2>&1 & ;;
    py) "${ON_SERVER_CPU[@]}" build/venv/bin/python benches/peers/websockets_echo.py >"$log" 2>&1 & ;;
    resty) "${ON_SERVER_CPU[@]}" bash benches/peers/resty.sh >"$log" 2>&1 & ;;
    luahttp) "${ON_SERVER_CPU[@]}" lua5.1 benches/peers/lua_http_echo.lua >"$log" 2>&1 & ;;
    lua-wss) LUA_CPATH="$root/?.so;;" "${ON_SERVER_CPU[@]}" lua5.4 benches/lua/idle_server.lua 1 30 "$CERT" "$KEY" >"$log" 2>&1 & ;;
    node-wss) NODE_PATH=build/node/node_modules "${ON_SERVER_CPU[@]}" node benches/peers/ws_echo.js plain "$CERT" "$KEY" >"$log" 2>&1 & ;;
    uws) # takes a port: a free one, announced in our form once it accepts
      local free
      free="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
      "${ON_SERVER_CPU[@]}" "$UWS" "$free" >"$log.raw" 2>&1 &
      for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$free") 2>/dev/null && { echo "listening on ws://127.0.0.1:$free" >"$log"; break; }
        sleep 0.1
      done ;;
    *) echo "start_server: unknown server $1" >&2; exit 2 ;;
  esac
  PID=$!
  local port
  port="$(port_of "$log" "$1")" || exit 1
  case "$1" in
    tcp) TARGET=(--tcp "127.0.0.1:$port") ;;
    *-wss) TARGET=(--ws "wss://127.0.0.1:$port/echo") ;;
    *) TARGET=(--ws "ws://127.0.0.1:$port/echo") ;;
  esac
}

# need_node_ws: Node's ws 8 in build/node, installed when missing; exits saying so when
# there is no node (the caller's SERVERS can leave the node rows out).
need_node_ws() {
  command -v node >/dev/null || { echo "$(basename "$0"): node is missing (apt-get install nodejs npm), or leave the node servers out of SERVERS" >&2; exit 1; }
  [ -d build/node/node_modules/ws ] || npm install --silent --no-audit --no-fund --prefix build/node ws@8 >&2
}

# make_cert DIR: a self-signed certificate for 127.0.0.1 in DIR (sets CERT and KEY).
make_cert() {
  CERT="$1/cert.pem"; KEY="$1/key.pem"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -keyout "$KEY" -out "$CERT" 2>/dev/null
}
