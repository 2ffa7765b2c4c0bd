#!/usr/bin/env bash
# The benchmark's lua-resty-websocket peer: nginx (one worker, no master) serving
# benches/peers/resty_echo.lua at /echo on a free port of 127.0.0.1, in the foreground.
#   bash benches/peers/resty.sh         prints "listening on ws://127.0.0.1:PORT"
# Needs Debian's nginx-light, libnginx-mod-http-lua and lua-resty-core (benches/setup.sh
# installs them) and lua-nginx-websocket's files, unpacked from its Debian package into
# build/peers/resty (that package depends on nginx-extras, which the benchmark does not
# need). Run it under taskset to pin it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PREFIX="$PWD/build/peers/resty"
mkdir -p "$PREFIX/logs" "$PREFIX/tmp"
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat >"$PREFIX/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log stderr warn;
pid $PREFIX/nginx.pid;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
events { worker_connections 30000; }
http {
  access_log off;
  client_body_temp_path $PREFIX/tmp;
  lua_package_path "$PREFIX/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
  lua_code_cache on;
  server {
    listen 127.0.0.1:$PORT;
    location /echo {
      lua_socket_log_errors off;
      content_by_lua_file $PWD/benches/peers/resty_echo.lua;
    }
  }
}
CONF
echo "listening on ws://127.0.0.1:$PORT"
exec nginx -p "$PREFIX" -c "$PREFIX/nginx.conf"
