#!/usr/bin/env bash
# Runs every test: the lint checks (luacheck over the Lua, cargo clippy -D warnings; each
# counts as one test), the Rust unit tests, then the busted specs against the module built
# for Lua 5.4, 5.3, 5.1 and LuaJIT (each spec run loads that build into that Lua and talks
# to it over 127.0.0.1). Ends with one line "N passed, N failed, N skipped" (skipped: busted's
# pending specs, each saying why); exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test || exit 1
# The specs talk to 127.0.0.1 directly; the proxy specs set up their own proxies.
unset http_proxy https_proxy all_proxy ws_proxy wss_proxy no_proxy \
  HTTP_PROXY HTTPS_PROXY ALL_PROXY WS_PROXY WSS_PROXY NO_PROXY
mkdir -p spec/artifacts

passed=0
failed=0
skipped=0
status=0

# check NAME COMMAND...: one lint check, counted as a test.
check() {
  local name="$1"; shift
  if "$@"; then
    echo "ok $name"; passed=$((passed + 1))
  else
    echo "FAILED $name"; failed=$((failed + 1)); status=1
  fi
}
echo "== lint"
check "luacheck lua/ examples/ spec/ benches/lua/ benches/peers/ (.luacheckrc)" luacheck -q lua examples spec benches/lua benches/peers
check "cargo clippy --workspace --all-targets -D warnings" \
  timeout 1200 cargo clippy --release --quiet --workspace --all-targets -- -D warnings

check "README and docs/ link only to pages that exist" python3 -c '
import glob, os, re, sys
bad = [(f, l) for f in ["README.md"] + glob.glob("docs/*.md")
       for l in re.findall(r"\]\(([^)#:]+\.md)", open(f).read())
       if not os.path.exists(os.path.join(os.path.dirname(f), l))]
print("\n".join(f"{f}: {l}" for f, l in bad)); sys.exit(1 if bad else 0)'
check "crates/ws-proto depends on neither mlua nor tokio (cargo tree)" \
  bash -c '! cargo tree --quiet -p ws-proto --prefix none | grep -E "^(mlua|tokio) "'

echo "== cargo test (ws-proto: codec, engine, handshake...; the module: runtimes)"
timeout 1200 cargo test --release --quiet -p ws-proto -p service_utils_ws 2>&1 | tee spec/artifacts/cargo-test.log
[ "${PIPESTATUS[0]}" = 0 ] || status=1
while read -r p f; do
  passed=$((passed + p)); failed=$((failed + f))
done < <(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' spec/artifacts/cargo-test.log)

for lua in lua5.4 lua5.3 lua5.1 luajit; do
  echo "== busted on $lua"
  root="$(scripts/build.sh "$lua")" || { status=1; failed=$((failed + 1)); continue; }
  WS_CPATH_ROOT="$root" timeout 1200 busted --lua="$lua" -o plainTerminal 2>&1 | tee "spec/artifacts/busted-$lua.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  line="$(grep -E '^[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "spec/artifacts/busted-$lua.log" | tail -n 1)"
  if [ -z "$line" ]; then
    echo "busted on $lua printed no summary" >&2
    failed=$((failed + 1)); status=1
    continue
  fi
  read -r s f e p < <(echo "$line" | sed -E 's#^([0-9]+) successes? / ([0-9]+) failures? / ([0-9]+) errors? / ([0-9]+) pending.*#\1 \2 \3 \4#')
  passed=$((passed + s)); failed=$((failed + f + e)); skipped=$((skipped + p))
done

[ "$failed" = 0 ] || status=1
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
