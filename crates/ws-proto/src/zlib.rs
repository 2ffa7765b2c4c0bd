//! zlib: a safe handle on one raw-deflate stream of the system's zlib (`libz-sys`, linked
//! to `libz.so.1`, the same library a host process such as evluaserver already has).
//! Used directly rather than through flate2 for the two things flate2 does not expose:
//! the compressor's memLevel, which sizes its hash table (most of its memory), and resets
//! that keep the stream's window size. The `z_stream` is boxed: zlib keeps a pointer back
//! to it.

use libz_sys as z;
use std::os::raw::{c_int, c_uint, c_void};

/// What a call of [`Stream::run`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Progress was made; call again while input or output space remains.
    Ok,
    /// No progress was possible (no input, or no room for output).
    BufError,
    /// The deflate stream ended (a final block was inflated).
    StreamEnd,
}

/// The input was not a deflate stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Deflate,
    Inflate,
}

/// One raw-deflate (no zlib header) compressor or inflater.
pub struct Stream {
    strm: Box<z::z_stream>,
    direction: Direction,
}

// SAFETY: the stream's state is reached only through `&mut self` (its raw pointers are
// its own allocations and are never shared), and zlib keeps no thread-local state, so
// moving it to another thread is sound. evluaserver's registry needs this.
unsafe impl Send for Stream {}

const STREAM_SIZE: c_int = std::mem::size_of::<z::z_stream>() as c_int;

unsafe extern "C" fn zalloc(_: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    // SAFETY: calloc with any sizes is sound; zlib checks for NULL.
    unsafe { libc::calloc(items as usize, size as usize) }
}

unsafe extern "C" fn zfree(_: *mut c_void, p: *mut c_void) {
    // SAFETY: `p` came from `zalloc` (zlib frees only what it allocated).
    unsafe { libc::free(p) }
}

/// A `z_stream` before initialization: no buffers, our allocator.
fn new_stream() -> Box<z::z_stream> {
    Box::new(z::z_stream {
        next_in: std::ptr::null_mut(),
        avail_in: 0,
        total_in: 0,
        next_out: std::ptr::null_mut(),
        avail_out: 0,
        total_out: 0,
        msg: std::ptr::null_mut(),
        state: std::ptr::null_mut(),
        zalloc,
        zfree,
        opaque: std::ptr::null_mut(),
        data_type: 0,
        adler: 0,
        reserved: 0,
    })
}

impl Stream {
    /// A compressor: `level` 0..9, `window_bits` 9..15, `mem_level` 1..9.
    pub fn deflate(level: u8, window_bits: u8, mem_level: u8) -> Stream {
        let mut strm = new_stream();
        // SAFETY: strm is a valid z_stream (allocator set) that stays at this address
        // (boxed) for the life of the stream.
        let rc = unsafe {
            z::deflateInit2_(
                &mut *strm,
                c_int::from(level),
                z::Z_DEFLATED,
                -c_int::from(window_bits),
                c_int::from(mem_level),
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                STREAM_SIZE,
            )
        };
        assert_eq!(
            rc,
            z::Z_OK,
            "deflateInit2 refused level {level}, window {window_bits}, memLevel {mem_level}"
        );
        Stream {
            strm,
            direction: Direction::Deflate,
        }
    }

    /// An inflater for streams made with a window of up to `window_bits` (9..15).
    pub fn inflate(window_bits: u8) -> Stream {
        let mut strm = new_stream();
        // SAFETY: as in `deflate`.
        let rc = unsafe {
            z::inflateInit2_(
                &mut *strm,
                -c_int::from(window_bits),
                z::zlibVersion(),
                STREAM_SIZE,
            )
        };
        assert_eq!(rc, z::Z_OK, "inflateInit2 refused window {window_bits}");
        Stream {
            strm,
            direction: Direction::Inflate,
        }
    }

    /// Runs `input` through the stream with a sync flush, appending to `out` within its
    /// spare capacity; returns how much input was consumed and the status.
    pub fn run(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, Status), DataError> {
        let room = out.spare_capacity_mut();
        let s = &mut *self.strm;
        s.next_in = input.as_ptr().cast_mut();
        s.avail_in = u32::try_from(input.len()).unwrap_or(u32::MAX);
        s.next_out = room.as_mut_ptr().cast();
        s.avail_out = u32::try_from(room.len()).unwrap_or(u32::MAX);
        let (avail_in, avail_out) = (s.avail_in, s.avail_out);
        // SAFETY: next_in/next_out point into `input` and the spare capacity of `out`,
        // valid for avail_in/avail_out bytes during the call; the stream was initialized
        // for this direction.
        let rc = unsafe {
            match self.direction {
                Direction::Deflate => z::deflate(s, z::Z_SYNC_FLUSH),
                Direction::Inflate => z::inflate(s, z::Z_SYNC_FLUSH),
            }
        };
        let consumed = (avail_in - s.avail_in) as usize;
        let produced = (avail_out - s.avail_out) as usize;
        s.next_in = std::ptr::null_mut();
        s.next_out = std::ptr::null_mut();
        // SAFETY: zlib wrote `produced` bytes at the start of the spare capacity.
        unsafe { out.set_len(out.len() + produced) };
        match rc {
            z::Z_OK => Ok((consumed, Status::Ok)),
            z::Z_BUF_ERROR => Ok((consumed, Status::BufError)),
            z::Z_STREAM_END => Ok((consumed, Status::StreamEnd)),
            _ => Err(DataError),
        }
    }

    /// Starts a new stream with the same settings (window size kept).
    pub fn reset(&mut self) {
        // SAFETY: the stream was initialized for this direction.
        unsafe {
            match self.direction {
                Direction::Deflate => z::deflateReset(&mut *self.strm),
                Direction::Inflate => z::inflateReset(&mut *self.strm),
            };
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the stream was initialized for this direction and is ended once.
        unsafe {
            match self.direction {
                Direction::Deflate => z::deflateEnd(&mut *self.strm),
                Direction::Inflate => z::inflateEnd(&mut *self.strm),
            };
        }
    }
}
