//! routing: URL path → name of the Lua handler module. Pure, and a security boundary.
//!
//! `/a/b/c?x=1` names the module `a.b.c` (query and fragment ignored), optionally under a
//! base namespace (`app.ws` + `/chat` → `app.ws.chat`). Every segment must be a plain Lua
//! identifier, so a client can never make the server `require` a name it chose freely
//! (`..`, `%2e`, `/`, `.` and the like are refused before anything is loaded).

pub const PATH_EMPTY: &str = "Path empty: Unable to deduce message handler";

/// Whether `s` matches `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a base namespace: identifiers joined by dots, or empty for none.
pub fn check_base(base: &str) -> Result<(), String> {
    if base.is_empty() || base.split('.').all(is_identifier) {
        Ok(())
    } else {
        Err(format!(
            "handler base namespace '{base}' must be identifiers joined by '.'"
        ))
    }
}

/// The handler module named by `uri`, under `base` when it is not empty.
/// A trailing slash is allowed (`/echo/` is `/echo`).
pub fn handler_module(uri: &str, base: &str) -> Result<String, String> {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Err(PATH_EMPTY.to_owned());
    }
    let mut name = String::with_capacity(base.len() + 1 + path.len());
    if !base.is_empty() {
        name.push_str(base);
        name.push('.');
    }
    for (i, segment) in path.split('/').enumerate() {
        if !is_identifier(segment) {
            return Err(format!(
                "Invalid path segment '{segment}': handler path segments must match [A-Za-z_][A-Za-z0-9_]*"
            ));
        }
        if i > 0 {
            name.push('.');
        }
        name.push_str(segment);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_become_a_dotted_module_name_and_the_query_is_ignored() {
        assert_eq!(handler_module("/a/b/c?x=1", ""), Ok("a.b.c".into()));
        assert_eq!(handler_module("/echo", ""), Ok("echo".into()));
        assert_eq!(handler_module("/echo/", ""), Ok("echo".into()));
        assert_eq!(handler_module("/chat#frag", ""), Ok("chat".into()));
    }

    #[test]
    fn a_base_namespace_prefixes_the_module() {
        assert_eq!(handler_module("/chat", "app.ws"), Ok("app.ws.chat".into()));
        assert!(check_base("app.ws").is_ok());
        assert!(check_base("").is_ok());
        assert!(check_base("app..ws").is_err());
        assert!(check_base("app/ws").is_err());
    }

    #[test]
    fn an_empty_path_has_the_original_message() {
        for uri in ["/", "", "/?x=1"] {
            assert_eq!(handler_module(uri, "").unwrap_err(), PATH_EMPTY);
        }
    }

    #[test]
    fn segments_that_are_not_identifiers_are_refused() {
        for uri in [
            "/..", "/a/../b", "/a.b", "/%2e%2e", "/a//b", "/1abc", "/a-b", "/a b", "/os.exit", "/é",
        ] {
            let err = handler_module(uri, "app").unwrap_err();
            assert!(err.starts_with("Invalid path segment"), "{uri}: {err}");
        }
        assert!(is_identifier("_private9"));
    }
}
