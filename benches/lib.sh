# benches/lib.sh: what the benchmark scripts share (sourced by run.sh, fanout.sh, workers.sh).

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

# stop_pid: stops the server in $PID, if any, and waits for it.
stop_pid() {
  if [ -n "${PID:-}" ]; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
  fi
}
