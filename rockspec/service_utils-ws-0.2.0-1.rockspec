-- luarocks make rockspec/service_utils-ws-0.2.0-1.rockspec   (the 0.2.0 release; CHANGELOG.md)
-- Builds the Rust module with cargo (Rust must be installed) for the Lua luarocks targets
-- and installs service_utils/WS/web_socket.so into the tree's C module directory, and
-- ws_const / ws_util (plain Lua, the same files the .so embeds) into its Lua directory;
-- the editor types (types/, LuaCATS) go into the rock's directory
-- (`luarocks show --rock-dir service_utils-ws`/types: add it to Lua.workspace.library).
rockspec_format = "3.0"
package = "service_utils-ws"
version = "0.2.0-1"
source = {
	url = "git+https://example.invalid/service_utils-ws.git",
	tag = "v0.2.0",
}
description = {
	summary = "service_utils.WS.web_socket: WebSocket server and client for Lua, in Rust",
	detailed = "A drop-in replacement of the evlua service_utils.WS modules that also runs in plain Lua: RFC 6455 server with Lua handler classes.",
	license = "MIT",
}
dependencies = {
	"lua >= 5.1, < 5.5",
}
build = {
	type = "command",
	build_command = [[bash scripts/build.sh "$(LUA)" > .luarocks-build-root]],
	install_command = [[mkdir -p "$(LIBDIR)/service_utils/WS" && cp "$(cat .luarocks-build-root)/service_utils/WS/web_socket.so" "$(LIBDIR)/service_utils/WS/" && rm -f .luarocks-build-root]],
	copy_directories = { "types" },
	install = {
		lua = {
			["service_utils.WS.ws_const"] = "lua/ws_const.lua",
			["service_utils.WS.ws_util"] = "lua/ws_util.lua",
		},
	},
}
