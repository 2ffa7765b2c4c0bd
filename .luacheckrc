-- luacheck (Debian's lua-check), run by scripts/test.sh over lua/, examples/, spec/,
-- benches/lua/ and benches/peers/. The module's Lua runs on every Lua from 5.1 to 5.4: `max` knows them all.
std = "max"
max_line_length = 150
exclude_files = { "spec/artifacts/**", "types/**" }
-- Handler and platform interfaces have their arguments whether a function uses them or not.
unused_args = false

-- evluaserver's global, used by the glue when it runs there.
files["lua/platform.lua"] = { read_globals = { "platform" } }
files["spec/**/*_spec.lua"] = { std = "+busted" }
-- nginx's Lua module's global, for the benchmark's lua-resty-websocket peer.
files["benches/peers/resty_echo.lua"] = { read_globals = { "ngx" } }
