//! evluaserver: the runtime where evluaserver owns the thread. Its worker threads
//! dispatch each frame of a connection to `lua/platform.lua` in whatever Lua state is
//! free, so a connection's state lives in a process-wide `registry` keyed by socket
//! descriptor; `bindings` are the `core` functions the glue drives it with; `buffers` the
//! byte buffer for `platform.*` calls without `ffi`.

pub mod bindings;
pub mod buffers;
pub mod registry;

pub use bindings::register;
