//! Health checks: the `health` step's URL parsing, the HTTP request it sends through the SSH
//! connection (TLS on top of it for `https://`, `tls.rs`), and judging the response.

use std::time::Duration;

pub mod tls;

pub use tls::{Tls, Trust};

use crate::secrets::Redactor;

/// Where an HTTP health check connects, as seen from the target host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// `https://`: the request goes inside TLS.
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpTarget {
    /// The URL, for messages.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// What a health step checks, rendered for one host.
#[derive(Debug, Clone)]
pub enum Probe {
    Http {
        target: HttpTarget,
        /// Extra request headers (a `Host` here replaces the default one), validated.
        headers: Vec<(String, String)>,
        /// For `https://` targets: what the server's certificate must be trusted by.
        tls: Option<Tls>,
    },
    Command {
        command: String,
        dir: Option<String>,
    },
}

/// The shortest wait between two attempts of a health check: a playbook asking for less is
/// refused, and the executor never retries faster (a check must not hammer the host).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub probe: Probe,
    /// HTTP status that counts as healthy.
    pub expect: u16,
    /// Text the body must contain, if set.
    pub contains: Option<String>,
    pub timeout: Duration,
    pub interval: Duration,
}

/// What is wrong with a health check's URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{url}` is not an http:// or https:// URL")]
    NotHttp { url: String },
    #[error("`{url}`: unclosed `[` in the host")]
    Unclosed { url: String },
    #[error("`{url}` has no host")]
    NoHost { url: String },
    #[error("`{url}`: bad port `{port}`")]
    BadPort { url: String, port: String },
}

/// Why an HTTP answer is not healthy; the excerpts are masked for secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("empty response (connection closed without an answer)")]
    Empty,
    #[error("not an HTTP response: {excerpt}")]
    NotHttp { excerpt: String },
    #[error("HTTP {status} (expected {expected}): {excerpt}")]
    Status {
        status: u16,
        expected: u16,
        excerpt: String,
    },
    #[error("HTTP {status} but the body lacks `{needle}`: {excerpt}")]
    Lacks {
        status: u16,
        needle: String,
        excerpt: String,
    },
}

/// Parses `http://host[:port]/path` or `https://host[:port]/path` (port 80 or 443 by default).
pub fn parse_url(url: &str) -> Result<HttpTarget, UrlError> {
    let owned = || url.to_string();
    let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => return Err(UrlError::NotHttp { url: owned() }),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (h, after) = stripped
            .split_once(']')
            .ok_or_else(|| UrlError::Unclosed { url: owned() })?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost { url: owned() });
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| UrlError::BadPort {
            url: owned(),
            port: p.to_string(),
        })?,
        None if https => 443,
        None => 80,
    };
    Ok(HttpTarget {
        https,
        host,
        port,
        path: path.to_string(),
    })
}

/// A minimal HTTP/1.0 GET: the server closes the connection after answering. A `Host` among
/// `headers` replaces the default `host:port`; the others follow it.
pub fn request(target: &HttpTarget, headers: &[(String, String)]) -> Vec<u8> {
    let host = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map_or_else(
            || {
                if target.host.contains(':') {
                    format!("[{}]:{}", target.host, target.port)
                } else {
                    format!("{}:{}", target.host, target.port)
                }
            },
            |(_, value)| value.clone(),
        );
    let mut text = format!(
        "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: dropship-health\r\nAccept: */*\r\nConnection: close\r\n",
        target.path
    );
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("host") {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// What is wrong with a request header, if anything: names are HTTP tokens, values one line of
/// visible text; `Connection` and the body's framing are dropship's own.
pub fn header_problem(name: &str, value: &str) -> Option<String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Some(format!("bad header name `{name}`"));
    }
    if ["connection", "content-length", "transfer-encoding"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
    {
        return Some(format!("header `{name}` is set by dropship"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Some(format!(
            "header `{name}`: the value holds a line break or control character"
        ));
    }
    None
}

/// The status code and body of a raw HTTP response. What an error shows of the response is
/// masked for secrets before it is cut or collapsed.
pub fn parse_response<'r>(
    raw: &'r [u8],
    redactor: &Redactor,
) -> Result<(u16, &'r [u8]), Unhealthy> {
    let line_end = memchr::memchr(b'\n', raw).unwrap_or(raw.len());
    let status_line = String::from_utf8_lossy(&raw[..line_end]);
    let status_line = status_line.trim_end_matches('\r');
    if status_line.is_empty() {
        return Err(Unhealthy::Empty);
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| Unhealthy::NotHttp {
            excerpt: excerpt(raw, redactor),
        })?;
    let body = memchr::memmem::find(raw, b"\r\n\r\n").map_or(&raw[raw.len()..], |i| &raw[i + 4..]);
    Ok((status, body))
}

/// Whether a response is healthy; otherwise what to report about it.
pub fn judge(
    check: &HealthCheck,
    status: u16,
    body: &[u8],
    redactor: &Redactor,
) -> Result<(), Unhealthy> {
    if status != check.expect {
        return Err(Unhealthy::Status {
            status,
            expected: check.expect,
            excerpt: excerpt(body, redactor),
        });
    }
    if let Some(needle) = &check.contains
        && memchr::memmem::find(body, needle.as_bytes()).is_none()
    {
        return Err(Unhealthy::Lacks {
            status,
            needle: needle.clone(),
            excerpt: excerpt(body, redactor),
        });
    }
    Ok(())
}

/// The first 200 characters of a body, on one line; secrets are masked over the raw bytes
/// first, so neither the cut nor the collapsed whitespace can split one.
pub fn excerpt(body: &[u8], redactor: &Redactor) -> String {
    let body = String::from_utf8_lossy(&redactor.redact_bytes(body)).into_owned();
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 200 {
        format!("{}…", flat.chars().take(200).collect::<String>())
    } else if flat.is_empty() {
        "(empty body)".to_string()
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_and_without_port() {
        assert_eq!(
            parse_url("http://127.0.0.1:8902/healthz?x=1").unwrap(),
            HttpTarget {
                https: false,
                host: "127.0.0.1".into(),
                port: 8902,
                path: "/healthz?x=1".into()
            }
        );
        assert_eq!(parse_url("http://localhost").unwrap().port, 80);
        assert_eq!(parse_url("http://[::1]:81/").unwrap().host, "::1");
        let https = parse_url("https://pixel.example.com/up").unwrap();
        assert!(https.https);
        assert_eq!(https.port, 443);
        assert_eq!(https.url(), "https://pixel.example.com:443/up");
        assert!(
            parse_url("ftp://x/")
                .unwrap_err()
                .to_string()
                .contains("not an http:// or https:// URL")
        );
        assert!(
            parse_url("http://x:99999/")
                .unwrap_err()
                .to_string()
                .contains("bad port")
        );
    }

    #[test]
    fn a_host_header_replaces_the_default_and_headers_are_validated() {
        let target = parse_url("http://127.0.0.1:8080/up").unwrap();
        let plain = String::from_utf8(request(&target, &[])).unwrap();
        assert!(
            plain.starts_with("GET /up HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n"),
            "{plain}"
        );
        let headers = vec![
            ("Host".to_string(), "pixel.example.com".to_string()),
            ("X-Probe".to_string(), "1".to_string()),
        ];
        let asked = String::from_utf8(request(&target, &headers)).unwrap();
        assert!(
            asked.starts_with("GET /up HTTP/1.0\r\nHost: pixel.example.com\r\n"),
            "{asked}"
        );
        assert_eq!(asked.matches("Host:").count(), 1, "{asked}");
        assert!(
            asked.ends_with("Connection: close\r\nX-Probe: 1\r\n\r\n"),
            "{asked}"
        );
        assert_eq!(header_problem("Host", "a.example"), None);
        assert!(
            header_problem("Bad Name", "x")
                .unwrap()
                .contains("bad header name")
        );
        assert!(
            header_problem("X", "a\r\nEvil: 1")
                .unwrap()
                .contains("line break")
        );
        assert!(
            header_problem("connection", "keep-alive")
                .unwrap()
                .contains("set by dropship")
        );
    }

    #[test]
    fn judges_status_and_body() {
        let check = HealthCheck {
            probe: Probe::Command {
                command: "true".into(),
                dir: None,
            },
            expect: 200,
            contains: Some("version=A".into()),
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
        };
        let r = Redactor::default();
        let (status, body) =
            parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nversion=A db=ok", &r).unwrap();
        assert_eq!(status, 200);
        assert!(judge(&check, status, body, &r).is_ok());
        let err = judge(&check, 502, b"<html>Bad Gateway</html>", &r)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "HTTP 502 (expected 200): <html>Bad Gateway</html>");
        assert!(
            judge(&check, 200, b"version=B", &r)
                .unwrap_err()
                .to_string()
                .contains("lacks `version=A`")
        );
        assert!(parse_response(b"", &r).is_err());
        assert!(
            parse_response(b"SSH-2.0-OpenSSH\r\n", &r)
                .unwrap_err()
                .to_string()
                .contains("not an HTTP response")
        );
    }

    #[test]
    fn a_secret_in_a_body_is_masked_before_the_excerpt_cuts_or_collapses_it() {
        let secret = crate::secrets::Secret::new("tok-1  tok-2\ntok-3");
        let r = Redactor::new([&secret]);
        let long = format!("{}tok-1  tok-2\r\ntok-3 end", "x".repeat(195));
        let shown = excerpt(long.as_bytes(), &r);
        assert!(!shown.contains("tok"), "{shown}");
        assert!(
            shown.starts_with("xxxxx") && shown.ends_with("*****…"),
            "{shown}"
        );
        let spaced = excerpt(b"a \t tok-1  tok-2\ntok-3 \n b", &r);
        assert_eq!(spaced, "a ******** b");
    }
}
