//! static_files: plain GET and HEAD requests answered from a directory (the `static`
//! option), so a WebSocket server can also serve the page that connects to it.
//!
//! Deliberately small and hard to abuse. `/` means `/index.html`; a path is looked at only
//! if every segment is a plain name (letters, digits, `-`, `_`, `.`, not starting with a
//! dot), and served only if its real path (symlinks resolved) lies inside the directory's
//! real path, fixed at start: a symlink to `/etc` is a 404. Files are streamed from disk
//! through one 16 KiB buffer, each chunk within `send_timeout` (a client that does not
//! read is cut), so a slow client holds 16 KiB, not the file. `Last-Modified` and
//! `If-Modified-Since` (→ 304) let browsers revalidate.
//!
//! [`StaticDir::answer`] decides (pure but for the file system); [`send`] writes.

use crate::standalone::http::Response;
use crate::standalone::timers::timeout;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bytes read from the file and written to the socket at a time.
const CHUNK: usize = 16 << 10;

fn content_type(path: &str) -> &'static str {
    match path
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// Whether `segment` may name a file or directory under the static root.
fn is_plain_segment(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What to answer a plain request with.
pub enum Answer {
    /// A complete answer (an error, or 304).
    Whole(Response),
    /// The head of a 200, then `len` bytes of `file` unless the request was HEAD.
    File {
        head: Response,
        file: Option<File>,
        len: u64,
    },
}

/// The directory of the `static` option, by its real path.
pub struct StaticDir {
    root: PathBuf,
}

impl StaticDir {
    /// Resolves `dir` once, at start: it must be a directory.
    pub fn open(dir: &str) -> Result<Self, String> {
        let root =
            std::fs::canonicalize(dir).map_err(|e| format!("static directory '{dir}': {e}"))?;
        if !root.is_dir() {
            return Err(format!("static directory '{dir}' is not a directory"));
        }
        Ok(StaticDir { root })
    }

    /// The answer to `method uri` (with the request's `If-Modified-Since`, if any).
    pub fn answer(&self, method: &str, uri: &str, if_modified_since: Option<&str>) -> Answer {
        if method != "GET" && method != "HEAD" {
            return Answer::Whole(Response::error(405, "Only GET and HEAD are served here"));
        }
        let not_found = || Answer::Whole(Response::error(404, "Not found"));
        let path = uri.split(['?', '#']).next().unwrap_or("/");
        let path = if path.ends_with('/') {
            format!("{path}index.html")
        } else {
            path.to_owned()
        };
        let relative = path.trim_start_matches('/');
        if !relative.split('/').all(is_plain_segment) {
            return not_found();
        }
        let Some(real) = self.inside(&self.root.join(relative)) else {
            return not_found();
        };
        let Ok(file) = File::open(&real) else {
            return not_found();
        };
        let Ok(meta) = file.metadata() else {
            return not_found();
        };
        if !meta.is_file() {
            return not_found();
        }
        let modified = meta.modified().ok().and_then(unix_seconds);
        let last_modified = modified.map(http_date);
        if let (Some(m), Some(since)) = (modified, if_modified_since.and_then(parse_http_date)) {
            if m <= since {
                let mut r = Response::with_status(304);
                if let Some(lm) = &last_modified {
                    r.push_header("Last-Modified", lm);
                }
                return Answer::Whole(r);
            }
        }
        let mut head = Response::file_head(content_type(relative), meta.len());
        if let Some(lm) = &last_modified {
            head.push_header("Last-Modified", lm);
        }
        Answer::File {
            head,
            file: (method == "GET").then_some(file),
            len: meta.len(),
        }
    }

    /// The real path of `candidate` if it lies inside the root (symlinks resolved).
    fn inside(&self, candidate: &Path) -> Option<PathBuf> {
        let real = std::fs::canonicalize(candidate).ok()?;
        real.starts_with(&self.root).then_some(real)
    }
}

/// Writes `answer` to `stream`: the head, then the file chunk by chunk, each chunk
/// given `send_timeout` to go out. Returns false when the client was cut off.
pub async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    answer: Answer,
    send_timeout: Option<Duration>,
) -> bool {
    let (head, file, len) = match answer {
        Answer::Whole(r) => return write_within(stream, &r.to_bytes(), send_timeout).await,
        Answer::File { head, file, len } => (head, file, len),
    };
    let mut sent = write_within(stream, &head.to_bytes(), send_timeout).await;
    if let Some(mut file) = file {
        let mut left = len;
        let mut buf = vec![0u8; CHUNK];
        while sent && left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            // A local file: one short blocking read per chunk.
            let n = match file.read(&mut buf[..want]) {
                Ok(n) if n > 0 => n,
                _ => return false, // the file shrank under us: the length is wrong now
            };
            left -= n as u64;
            sent = write_within(stream, &buf[..n], send_timeout).await;
        }
    }
    sent
}

/// Writes all of `bytes` unless that takes longer than `limit` (`None`: no limit).
async fn write_within<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: Option<Duration>,
) -> bool {
    match limit {
        Some(limit) => matches!(timeout(limit, stream.write_all(bytes)).await, Ok(Ok(()))),
        None => stream.write_all(bytes).await.is_ok(),
    }
}

fn unix_seconds(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month 1-12, day 1-31) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch as an IMF-fixdate (RFC 9110 §5.6.7):
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An IMF-fixdate back to seconds since the epoch; `None` for anything else (the other,
/// obsolete formats are then ignored, as RFC 9110 §13.1.3 allows for a bad date).
pub fn parse_http_date(s: &str) -> Option<u64> {
    let mut parts = s.split_ascii_whitespace();
    let _day = parts.next()?.strip_suffix(',')?;
    let d: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let m = MONTHS.iter().position(|&x| x == month)? as u32 + 1;
    let y: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(a: &Answer) -> u16 {
        match a {
            Answer::Whole(r) => r.status,
            Answer::File { head, .. } => head.status,
        }
    }

    fn public() -> StaticDir {
        StaticDir::open("examples/public").unwrap()
    }

    #[test]
    fn paths_that_could_leave_the_directory_are_not_served() {
        for uri in [
            "/../etc/passwd",
            "/a/../../x",
            "/.hidden",
            "/%2e%2e/x",
            "//etc/passwd",
            "/a b",
        ] {
            assert_eq!(status(&public().answer("GET", uri, None)), 404, "{uri}");
        }
        assert_eq!(status(&public().answer("POST", "/", None)), 405);
    }

    #[test]
    fn symlinks_out_of_the_directory_are_not_served() {
        let dir = std::env::temp_dir().join(format!("ws-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/in.txt"), "inside").unwrap();
        let _ = std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd"));
        let _ = std::os::unix::fs::symlink("/etc", dir.join("etc"));
        let _ = std::os::unix::fs::symlink(dir.join("sub/in.txt"), dir.join("alias.txt"));
        let s = StaticDir::open(dir.to_str().unwrap()).unwrap();
        assert_eq!(status(&s.answer("GET", "/passwd", None)), 404);
        assert_eq!(status(&s.answer("GET", "/etc/passwd", None)), 404);
        assert_eq!(status(&s.answer("GET", "/sub/in.txt", None)), 200);
        assert_eq!(
            status(&s.answer("GET", "/alias.txt", None)),
            200,
            "a link that stays inside is fine"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_index_is_served_for_slash_with_its_type_length_and_date() {
        let Answer::File { head, len, file } = public().answer("GET", "/?x=1", None) else {
            panic!("not a file");
        };
        assert!(file.is_some());
        let text = String::from_utf8(head.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(text.contains(&format!("Content-Length: {len}\r\n")));
        assert!(text.contains("Last-Modified: "));
        let Answer::File { file, .. } = public().answer("HEAD", "/", None) else {
            panic!("not a file");
        };
        assert!(file.is_none(), "HEAD sends no body");
    }

    #[test]
    fn if_modified_since_the_file_changed_gets_304_without_a_body() {
        let Answer::File { head, .. } = public().answer("GET", "/", None) else {
            panic!("not a file");
        };
        let lm = head.header("Last-Modified").unwrap().to_owned();
        let a = public().answer("GET", "/", Some(&lm));
        let Answer::Whole(r) = a else {
            panic!("not a 304")
        };
        assert_eq!(r.status, 304);
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(text.ends_with("\r\n\r\n"));
        let older = http_date(parse_http_date(&lm).unwrap() - 1);
        assert_eq!(status(&public().answer("GET", "/", Some(&older))), 200);
        assert_eq!(status(&public().answer("GET", "/", Some("yesterday"))), 200);
    }

    #[test]
    fn http_dates_are_imf_fixdates_and_read_back() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        for t in [0, 784_111_777, 951_782_400, 4_102_444_799] {
            assert_eq!(parse_http_date(&http_date(t)), Some(t));
        }
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn common_web_types_have_their_content_type() {
        for (name, t) in [
            ("a.wasm", "application/wasm"),
            ("a.JPG", "image/jpeg"),
            ("a.woff2", "font/woff2"),
            ("a.mjs", "text/javascript; charset=utf-8"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name), t, "{name}");
        }
    }
}
