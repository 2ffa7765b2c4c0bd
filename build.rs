//! Links the Lua module with `-z nodelete`: the evluaserver runtime keeps its connections
//! in the library's memory, and evlua's Lua `dlclose`s a C module whenever the Lua state
//! that loaded it closes (after every frame with `enableluafilecache = false`). The flag
//! keeps the library mapped, with that state, for the life of the process.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
