//! http: the `request` and `response` objects of the opening handshake (standalone mode).
//!
//! They offer the evluaserver methods the original `ws.accept` and handler `init`
//! functions use (`get_hdr_fields`, `set_status`, `send`, ...; `tostring` gives `httpsreq`
//! and `httpsresp`), so the same Lua code runs on both runtimes. The response is only
//! collected here; [`Response::to_bytes`] turns it into HTTP/1.1 for the server to write.

use mlua::{Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods};
use std::net::SocketAddr;
use ws_proto::handshake::{header_value, json_error, RequestHead};

/// Name under which the shared metatable of header tables is kept in the registry.
const HEADER_MT: &str = "service_utils.WS.header_mt";

/// A header table: names stored lowercased, any case found through the metatable.
pub fn header_table(lua: &Lua, headers: &[(String, String)]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, headers.len())?;
    for (name, _) in headers {
        let key = name.to_ascii_lowercase();
        if !t.contains_key(key.as_str())? {
            t.raw_set(key, header_value(headers, name))?;
        }
    }
    let mt = match lua.named_registry_value::<Option<Table>>(HEADER_MT)? {
        Some(mt) => mt,
        None => {
            let mt: Table = lua
                .load(r#"return { __index = function(t, k) if type(k) == "string" then return rawget(t, k:lower()) end end }"#)
                .set_name("=header_mt")
                .eval()?;
            lua.set_named_registry_value(HEADER_MT, &mt)?;
            mt
        }
    };
    t.set_metatable(Some(mt));
    Ok(t)
}

/// The Upgrade request as handed to `ws.accept` and `init`.
pub struct Request {
    pub head: RequestHead,
    pub peer: SocketAddr,
    /// The handler module the server's `routes` give this request's path, read by
    /// `ws.accept` (`request.route`).
    pub route: Option<String>,
    /// The server's handler base namespace, read by `ws.accept` (`request.handler_base`).
    pub handler_base: Option<String>,
    /// The server's Origin allow-list, read by `ws.accept` (`request.allowed_origins`).
    pub allowed_origins: Option<Vec<String>>,
    /// The server's `compression` option, read by `ws.accept` (`request.compression`:
    /// `false` or the configuration).
    pub compression: Option<ws_proto::deflate::Config>,
}

impl UserData for Request {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("route", |_, this| Ok(this.route.clone()));
        fields.add_field_method_get("handler_base", |_, this| Ok(this.handler_base.clone()));
        fields.add_field_method_get("allowed_origins", |_, this| {
            Ok(this.allowed_origins.clone())
        });
        fields.add_field_method_get("compression", |lua, this| match this.compression {
            Some(cfg) => lua.create_any_userdata(cfg).map(mlua::Value::UserData),
            None => Ok(mlua::Value::Boolean(false)),
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get_hdr_fields", |lua, this, ()| {
            header_table(lua, &this.head.headers)
        });
        methods.add_method("get_hdr_field", |_, this, name: String| {
            Ok(this.head.header(&name))
        });
        methods.add_method("get_uri", |_, this, ()| Ok(this.head.uri.clone()));
        methods.add_method("get_method", |_, this, ()| Ok(this.head.method.clone()));
        methods.add_method("get_peer_address", |_, this, ()| Ok(this.peer.to_string()));
        methods.add_meta_method(MetaMethod::ToString, |_, _, ()| Ok("httpsreq"));
    }
}

/// The answer being built by `ws.accept` / `init`.
#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    content_length: Option<u64>,
    chunked: bool,
    body: Vec<u8>,
    sent: bool,
}

impl Response {
    pub fn new() -> Self {
        Response {
            status: 200,
            ..Default::default()
        }
    }

    /// A complete error answer in the original's shape: status, JSON body and `X-msg`.
    pub fn error(status: u16, message: &str) -> Self {
        let json = json_error(message);
        let mut r = Response::new();
        r.status = status;
        r.content_type = Some("application/json".into());
        r.headers.push(("X-msg".into(), json.clone()));
        r.body = json.into_bytes();
        r.sent = true;
        r
    }

    /// A complete answer with this status and no body.
    pub fn with_status(status: u16) -> Self {
        let mut r = Response::new();
        r.status = status;
        r.sent = true;
        r
    }

    /// The head of a 200 whose body of `len` bytes the caller writes after it.
    pub fn file_head(content_type: &str, len: u64) -> Self {
        let mut r = Response::with_status(200);
        r.content_type = Some(content_type.to_owned());
        r.content_length = Some(len);
        r
    }

    /// Adds a header the server itself sets (a name and value known to be valid).
    pub fn push_header(&mut self, name: &str, value: &str) {
        self.headers.push((name.to_owned(), value.to_owned()));
    }

    fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic() || b == b':') {
            return Err(format!("set_hdr_field: invalid header name '{name}'"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!(
                "set_hdr_field: value of '{name}' must not contain CR, LF or NUL"
            ));
        }
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(h) => h.1 = value.to_owned(),
            None => self.headers.push((name.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response as HTTP/1.1 bytes. 1xx and 304 answers carry no body framing (RFC
    /// 9110 §8.6, §15.4.5); others carry the body chunked or with its length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\n",
                self.status,
                reason_phrase(self.status)
            )
            .as_bytes(),
        );
        for (n, v) in &self.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        let informational = (100..200).contains(&self.status);
        let has_body = !informational && self.status != 304;
        if has_body {
            if let Some(ct) = &self.content_type {
                out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            if self.chunked {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            } else {
                let len = self.content_length.unwrap_or(self.body.len() as u64);
                out.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes());
            }
        }
        if !informational && self.header("Connection").is_none() {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if has_body {
            if self.chunked {
                if !self.body.is_empty() {
                    out.extend_from_slice(format!("{:x}\r\n", self.body.len()).as_bytes());
                    out.extend_from_slice(&self.body);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            } else {
                out.extend_from_slice(&self.body);
            }
        }
        out
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

impl UserData for Response {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("set_status", |_, this, status: u16| {
            if !(100..=599).contains(&status) {
                return Err(mlua::Error::runtime(format!(
                    "set_status: {status} is not an HTTP status code"
                )));
            }
            this.status = status;
            Ok(())
        });
        methods.add_method("get_status", |_, this, ()| Ok(this.status));
        methods.add_method_mut(
            "set_hdr_field",
            |_, this, (name, value): (String, String)| {
                this.set_header(&name, &value).map_err(mlua::Error::runtime)
            },
        );
        methods.add_method("get_hdr_field", |_, this, name: String| {
            Ok(this.header(&name).map(str::to_owned))
        });
        methods.add_method_mut("set_content_type", |_, this, ct: String| {
            this.content_type = Some(ct);
            Ok(())
        });
        methods.add_method_mut("set_content_length", |_, this, len: u64| {
            this.content_length = Some(len);
            Ok(())
        });
        methods.add_method_mut("set_chunked_trfencoding", |_, this, on: bool| {
            this.chunked = on;
            Ok(())
        });
        methods.add_method_mut("send", |_, this, ()| {
            if this.sent {
                return Err(mlua::Error::runtime(
                    "response:send() called twice: the response head is already sent",
                ));
            }
            this.sent = true;
            Ok(())
        });
        methods.add_method_mut("write", |_, this, data: mlua::String| {
            this.body.extend_from_slice(&data.as_bytes());
            Ok(())
        });
        methods.add_meta_method(MetaMethod::ToString, |_, _, ()| Ok("httpsresp"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_has_the_original_shape() {
        let bytes = Response::error(400, "Path empty: Unable to deduce message handler").to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains(
            "\r\nX-msg: {\"error_message\":\"Path empty: Unable to deduce message handler\"}\r\n"
        ));
        assert!(text.contains("\r\nContent-Type: application/json\r\n"));
        assert!(text.ends_with(
            "\r\n\r\n{\"error_message\":\"Path empty: Unable to deduce message handler\"}"
        ));
    }

    #[test]
    fn chunked_bodies_are_framed_and_101_has_no_body_framing() {
        let mut r = Response::new();
        r.status = 400;
        r.chunked = true;
        r.body = b"hello".to_vec();
        assert!(String::from_utf8(r.to_bytes()).unwrap().ends_with(
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ));
        let mut r = Response::new();
        r.status = 101;
        r.content_length = Some(0);
        r.set_header("Upgrade", "websocket").unwrap();
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn header_injection_is_refused() {
        let mut r = Response::new();
        assert!(r.set_header("X-a", "1\r\nSet-Cookie: x").is_err());
        assert!(r.set_header("X a", "1").is_err());
        r.set_header("x-A", "1").unwrap();
        r.set_header("X-a", "2").unwrap();
        assert_eq!(r.header("X-A"), Some("2"));
    }
}
