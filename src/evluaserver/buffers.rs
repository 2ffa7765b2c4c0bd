//! buffers: the byte buffer the glue hands to `platform.*` calls when `ffi` is not
//! available.

/// A byte buffer for `platform.*` calls when `ffi` is not available (a `platform`
/// without ffi, such as the specs' stand-in): the glue passes `{buffer = b, offset = n}`
/// where evluaserver takes a pointer.
pub struct ByteBuffer(pub Vec<u8>);

impl mlua::UserData for ByteBuffer {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("len", |_, this, ()| Ok(this.0.len()));
        // write_at(offset, data) -> bytes written (bounded by the buffer)
        methods.add_method_mut(
            "write_at",
            |_, this, (offset, data): (usize, mlua::String)| {
                let data = data.as_bytes();
                let end = offset
                    .checked_add(data.len())
                    .filter(|&e| e <= this.0.len())
                    .ok_or_else(|| mlua::Error::runtime("buffer: write past the end"))?;
                this.0[offset..end].copy_from_slice(&data);
                Ok(data.len())
            },
        );
        // read_at(offset, n) -> string
        methods.add_method("read_at", |lua, this, (offset, n): (usize, usize)| {
            let end = offset
                .checked_add(n)
                .filter(|&e| e <= this.0.len())
                .ok_or_else(|| mlua::Error::runtime("buffer: read past the end"))?;
            lua.create_string(&this.0[offset..end])
        });
    }
}
