//! Minimal blocking HTTP/1.1 (and HTTPS, trusting one CA) for the tests'
//! calls on the simulator and the bridge: keeps the test side independent
//! of the HTTP stack the bridge itself uses.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Response {
    pub status: u16,
    pub body: String,
    /// The status line and headers, as received.
    pub head: String,
}

impl Response {
    /// A header's value (the first, by case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

pub fn get(url: &str) -> std::io::Result<Response> {
    request("GET", url, None)
}

pub fn post_json(url: &str, body: &serde_json::Value) -> std::io::Result<Response> {
    request("POST", url, Some(body.to_string()))
}

pub fn delete(url: &str) -> std::io::Result<Response> {
    request("DELETE", url, None)
}

/// Any request with headers of the caller's (`Content-Type` included;
/// JSON when not given).
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<Response> {
    request_with(method, url, headers, body)
}

/// The CA that `https://` URLs must chain to (set once, by TLS tests).
static TRUSTED_CA: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Trust `ca_file` (PEM) for `https://` calls from now on.
pub fn trust_ca(ca_file: &std::path::Path) {
    let _ = TRUSTED_CA.set(ca_file.to_owned());
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(tls: bool, host: &str) -> std::io::Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect(host)?;
    tcp.set_read_timeout(Some(Duration::from_secs(300)))?;
    if !tls {
        return Ok(Box::new(tcp));
    }
    let ca = TRUSTED_CA
        .get()
        .expect("https:// URL: call support::http::trust_ca first");
    let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
        .map_err(std::io::Error::other)?;
    builder.set_ca_file(ca).map_err(std::io::Error::other)?;
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let stream = builder
        .build()
        .connect(name, tcp)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Box::new(stream))
}

fn request(method: &str, url: &str, body: Option<String>) -> std::io::Result<Response> {
    request_with(method, url, &[], &body.unwrap_or_default())
}

fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<Response> {
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://").expect("http(s):// URL")),
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = connect(tls, host)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(stream, "{head}\r\n{body}")?;
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A TLS peer may close without close_notify after a full reply.
        if raw.is_empty() {
            return Err(e);
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Response {
        status,
        body,
        head: head.to_owned(),
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
