//! static_files: plain GET requests answered from a directory (the `static` option), so a
//! WebSocket server can also serve the page that connects to it.
//!
//! Deliberately small: GET and HEAD only, files up to 4 MiB, `/` means `/index.html`, and
//! a path is served only if every segment is a plain name (letters, digits, `-`, `_`,
//! `.`, not starting with a dot), so nothing outside the directory can be reached.

use crate::http::Response;
use std::path::Path;

const MAX_FILE: u64 = 4 << 20;

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
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

/// The answer to `method uri` from the directory `root`.
pub fn respond(root: &str, method: &str, uri: &str) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::error(405, "Only GET and HEAD are served here");
    }
    let path = uri.split(['?', '#']).next().unwrap_or("/");
    let path = if path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    let relative = path.trim_start_matches('/');
    if !relative.split('/').all(is_plain_segment) {
        return Response::error(404, "Not found");
    }
    let full = Path::new(root).join(relative);
    let body = match std::fs::metadata(&full) {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_FILE => std::fs::read(&full).ok(),
        _ => None,
    };
    match body {
        Some(body) => Response::content(
            200,
            content_type(relative),
            if method == "HEAD" { Vec::new() } else { body },
        ),
        None => Response::error(404, "Not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(respond("examples/public", "GET", uri).status, 404, "{uri}");
        }
        assert_eq!(respond("examples/public", "POST", "/").status, 405);
    }

    #[test]
    fn the_index_is_served_for_slash_with_its_type() {
        let r = respond("examples/public", "GET", "/?x=1");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), None); // carried as the content type, see to_bytes
        assert!(String::from_utf8(r.to_bytes())
            .unwrap()
            .contains("Content-Type: text/html; charset=utf-8\r\n"));
    }
}
