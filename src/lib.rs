//! `service_utils.WS.web_socket`: a WebSocket module for Lua, written in Rust.
//!
//! Layout (docs/architecture.md has the whole picture). The layers, lowest first:
//!
//! - `crates/ws-proto`: the pure parts — codec, deflate/zlib, engine, handshake, routing,
//!   url, random, subscriptions. No mlua, no tokio: Cargo enforces it.
//! - `lua_api/`: what Lua sees apart from each runtime's objects — the `core` table,
//!   option reading, the `log` option, and the answers both runtimes return (`answers`).
//! - `standalone/`: the runtime where this module owns the thread (tokio): server, client,
//!   session, connection, topics, Redis pub/sub, workers.
//! - `evluaserver/`: the runtime where evluaserver owns the thread: the process-wide
//!   registry of connections, the `core.links` bindings the Lua glue drives it with.
//! - this file: the Lua entry points (`luaopen_*`) only.
//!
//! The Lua parts (`lua/`) are embedded: `web_socket.lua` (`ws.accept` and the module
//! table), `platform.lua` (the evluaserver runtime, used when the `platform` global
//! exists), `ws_const.lua` and `ws_util.lua`. One `.so` is the whole module; it is
//! installed as `service_utils/WS/web_socket.so` with `ws_const.so` and `ws_util.so`
//! linking to it, each name finding its own `luaopen_` function.

pub mod evluaserver;
pub mod lua_api;
pub mod standalone;

use mlua::{Function, Lua, Table, Value};
use standalone::{runtime, server};

/// Runs one embedded Lua file with `core` as its argument and returns its table.
fn load_embedded(lua: &Lua, name: &str, source: &str, core: Table) -> mlua::Result<Table> {
    lua.load(source).set_name(format!("@{name}")).call(core)
}

/// `require('service_utils.WS.web_socket')`
#[mlua::lua_module(name = "service_utils_WS_web_socket", skip_memory_check)]
fn open_web_socket(lua: &Lua) -> mlua::Result<Table> {
    let ws = load_embedded(
        lua,
        "service_utils/WS/web_socket.lua",
        include_str!("../lua/web_socket.lua"),
        lua_api::core_table(lua)?,
    )?;
    lua.set_named_registry_value(server::ACCEPT_KEY, ws.get::<Function>("accept")?)?;
    // One guard per Lua state: a second `require` (after `package.loaded[...] = nil`, as
    // test runners and reloaders do) must not replace it, or the old guard's finalizer,
    // whenever the GC gets to it, would drop the connections opened since.
    const LOOP_GUARD: &str = "service_utils.WS.loop_guard";
    if lua.named_registry_value::<Value>(LOOP_GUARD)?.is_nil() {
        lua.set_named_registry_value(LOOP_GUARD, runtime::LoopGuard)?;
    }
    Ok(ws)
}

/// `require('service_utils.WS.ws_const')`
#[mlua::lua_module(name = "service_utils_WS_ws_const", skip_memory_check)]
fn open_ws_const(lua: &Lua) -> mlua::Result<Table> {
    load_embedded(
        lua,
        "service_utils/WS/ws_const.lua",
        include_str!("../lua/ws_const.lua"),
        lua.create_table()?,
    )
}

/// `require('service_utils.WS.ws_util')`
#[mlua::lua_module(name = "service_utils_WS_ws_util", skip_memory_check)]
fn open_ws_util(lua: &Lua) -> mlua::Result<Table> {
    load_embedded(
        lua,
        "service_utils/WS/ws_util.lua",
        include_str!("../lua/ws_util.lua"),
        lua.create_table()?,
    )
}
